# meridio-ipam container image: Debian 12, two stages.
#
#   podman build -t meridio-ipam .        (or: docker build -t meridio-ipam .)
#   docker run --read-only --tmpfs /tmp -v ipam-data:/run/ipam/data \
#       -p 7777:7777 -e IPAM_TRENCH_NAME=trench-a meridio-ipam
#
# The build stage holds the compilers and -dev packages; the runtime stage
# only the shared libraries the binaries load (test_deploy_image.py checks the
# list against `ldd`). The daemon runs as UID/GID 10004 like Meridio's images,
# keeps its database on the /run/ipam/data volume and needs a writable /tmp
# (its private runtime dir) when the root file system is read-only.

ARG DEBIAN_IMAGE=debian:bookworm

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make cmake pkg-config \
      libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
      libsqlite3-dev libsystemd-dev libjson-c-dev libbsd-dev \
 && rm -rf /var/lib/apt/lists/*

# .dockerignore lets only the sources in (CMakeLists.txt, proto, lib, cmd,
# systemd). Warnings are not errors here: a distribution build must not break
# on a new compiler's warning (make test keeps -Werror). Only the programs go
# to /out, laid out as they land in the runtime image.
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DIPAM_TESTS=OFF \
      -DIPAM_WERROR=OFF -DCMAKE_INSTALL_PREFIX=/usr \
 && cmake --build /build -j "$(nproc)" \
 && DESTDIR=/stage cmake --install /build --strip \
 && mkdir -p /out/usr/bin /out/usr/libexec \
 && cp -a /stage/usr/bin/meridio-ipam /stage/usr/bin/ipamctl /out/usr/bin/ \
 && cp -a /stage/usr/libexec/meridio-ipam /out/usr/libexec/

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}

# Runtime libraries only: one package per library the binaries load (their
# own dependencies come with them). libbsd is not among them: only its
# header-only sys/tree.h is used.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 libsqlite3-0 libsystemd0 libjson-c5 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10004 meridio \
 && useradd --system --uid 10004 --gid 10004 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin meridio \
 && mkdir -p /run/ipam/data \
 && chown 10004:10004 /run/ipam/data \
 && chmod 0700 /run/ipam/data

COPY --from=build /out/ /

ENV IPAM_DATA_SOURCE=/run/ipam/data/registry.db \
    TMPDIR=/tmp

USER 10004:10004
VOLUME ["/run/ipam/data"]
EXPOSE 7777

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/bin/sh", "-c", "exec ipamctl health --target 127.0.0.1:${IPAM_PORT:-7777}"]

ENTRYPOINT ["/usr/bin/meridio-ipam"]
