# meridio-ipam container image: Debian 12, two stages.
#
#   podman build --format docker -t meridio-ipam .     (or: docker build -t meridio-ipam .)
#   docker run --read-only --tmpfs /tmp -v ipam-data:/run/ipam/data \
#       -p 7777:7777 -e IPAM_TRENCH_NAME=trench-a -e IPAM_CONDUITS=conduit-a meridio-ipam
#
# Works unchanged as the `ipam` image of Meridio's chart and operator: a
# numeric USER (10004, as Meridio's images) for runAsNonRoot without
# runAsUser, /bin/grpc_health_probe for their exec probes on
# /tmp/health.sock, and a read-only root with /tmp and /run/ipam/data
# mounted. Both stages take their packages from scripts/deps.sh (groups
# build and runtime); every RUN that installs also removes apt's lists and
# caches, so no layer keeps them. HEALTHCHECK is not part of the OCI image
# format: podman keeps it only with --format docker.

ARG DEBIAN_IMAGE=debian:bookworm

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build

COPY scripts/deps.sh /tmp/deps.sh
RUN sh /tmp/deps.sh --only build \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/deps.sh

# .dockerignore lets only the sources in (CMakeLists.txt, proto, lib, cmd,
# systemd, scripts/deps.sh). Warnings are not errors here: a distribution
# build must not break on a new compiler's warning (make test keeps
# -Werror). Only the programs go to /out, laid out as they land in the
# runtime image (no man pages).
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DIPAM_TESTS=OFF \
      -DIPAM_WERROR=OFF -DIPAM_MANPAGES=OFF -DCMAKE_INSTALL_PREFIX=/usr \
 && cmake --build /build -j "$(nproc)" \
 && DESTDIR=/stage cmake --install /build --strip \
 && mkdir -p /out/usr/bin /out/usr/libexec \
 && cp -a /stage/usr/bin/meridio-ipam /stage/usr/bin/ipamctl \
      /stage/usr/bin/grpc_health_probe /out/usr/bin/ \
 && cp -a /stage/usr/libexec/meridio-ipam /out/usr/libexec/

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}

# /run/ipam/data is the mount point of the data volume; in a pod, fsGroup
# makes the volume group-writable, whoever owns it.
COPY scripts/deps.sh /tmp/deps.sh
RUN sh /tmp/deps.sh --only runtime \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/deps.sh \
 && groupadd --gid 10004 meridio \
 && useradd --uid 10004 --gid 10004 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin meridio \
 && mkdir -p /run/ipam/data \
 && chown 10004:10004 /run/ipam/data \
 && chmod 0700 /run/ipam/data

COPY --from=build /out/ /

ENV TMPDIR=/tmp

USER 10004:10004
VOLUME ["/run/ipam/data"]
EXPOSE 7777

# The probe Meridio's pods run, on the daemon's health socket (plaintext
# whether or not the port speaks SPIFFE mTLS).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/bin/sh", "-c", "exec /bin/grpc_health_probe -addr=unix://${IPAM_HEALTH_SOCKET:-/tmp/health.sock} -service=Readiness"]

ENTRYPOINT ["/usr/bin/meridio-ipam"]
