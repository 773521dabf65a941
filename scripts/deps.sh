#!/bin/sh
# The Debian 12 packages meridio-ipam needs, in named groups, and their
# installer. The only list: make, CI and both stages of the Dockerfile read
# it from here.
#
#   scripts/deps.sh [PACKAGE...]       build + test groups, plus PACKAGEs
#   scripts/deps.sh --only GROUP...    only these groups (build, runtime, test)
#   scripts/deps.sh --list [GROUP...]  print their packages (default: build
#                                      and test), one a line
#
# Checks which packages are missing. As root, installs them with apt-get
# (--no-install-recommends); otherwise prints the exact command to run and
# fails.
set -eu

# Compilers, tools and -dev packages the build reads (libssl-dev: libcrypto,
# which the SPIFFE code calls itself; help2man: the man pages).
GROUP_build="gcc libc6-dev make cmake pkg-config libgrpc-dev libprotobuf-c-dev
protobuf-c-compiler libsqlite3-dev libsystemd-dev libjson-c-dev libbsd-dev
libssl-dev help2man"
# What the installed programs load (test_deploy_image.py checks it against
# ldd): one package per library, their own dependencies come with them.
# libbsd is not among them: only its header-only sys/tree.h is used.
# libsystemd0 is dlopen'ed under systemd.
GROUP_runtime="libgrpc29 libprotobuf-c1 libsqlite3-0 libsystemd0 libjson-c5 libssl3"
# What make test needs beyond the build (build-essential: the developer's
# usual tool set, g++ and dpkg-dev, as the list has always had it; mandoc:
# lints the man pages, man-db renders them; systemd: systemd-analyze).
GROUP_test="build-essential libcriterion-dev sqlite3 protobuf-compiler
protobuf-compiler-grpc python3 python3-grpcio python3-protobuf strace openssl
python3-cryptography nodejs systemd mandoc man-db"
# npm: Debian's package, unless the nodejs installed brings its own.
command -v npm >/dev/null 2>&1 || GROUP_test="$GROUP_test npm"

group() {
	case "$1" in
	build) echo "$GROUP_build" ;;
	runtime) echo "$GROUP_runtime" ;;
	test) echo "$GROUP_test" ;;
	*)
		echo "deps: unknown group '$1' (build, runtime, test)" >&2
		exit 2 ;;
	esac
}

groups_of() {
	[ $# -gt 0 ] || { echo "deps: $mode needs a group (build, runtime, test)" >&2; exit 2; }
	for g in "$@"; do
		group "$g"
	done
}

mode=install
case "${1:-}" in
--list)
	mode=--list
	shift
	[ $# -gt 0 ] || set -- build test
	pkgs=$(groups_of "$@")
	# shellcheck disable=SC2086
	printf '%s\n' $pkgs
	exit 0 ;;
--only)
	mode=--only
	shift
	PKGS=$(groups_of "$@") ;;
-h|--help)
	sed -n '2,13s/^# \{0,1\}//p' "$0"
	exit 0 ;;
-*)
	echo "deps: unknown option '$1'" >&2
	exit 2 ;;
*)
	PKGS="$GROUP_build $GROUP_test $*" ;;
esac

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root:  apt-get update && $cmd" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
