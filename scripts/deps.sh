#!/bin/sh
# Checks the Debian packages meridio-ipam needs to build, run and test.
# As root, installs the missing ones with apt-get; otherwise prints the exact
# command to run and fails. `deps.sh --list` prints the list.
set -eu

PKGS="build-essential cmake pkg-config libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
libsqlite3-dev libsystemd-dev libjson-c-dev libbsd-dev libcriterion-dev sqlite3
protobuf-compiler protobuf-compiler-grpc python3 python3-grpcio python3-protobuf strace
libssl-dev openssl python3-cryptography nodejs"
# npm: Debian's package, unless the nodejs installed brings its own.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
# --list: print the package names, one a line, and do nothing else (the
# build-dependency test reads them).
if [ "${1:-}" = "--list" ]; then
	printf '%s\n' $PKGS
	exit 0
fi
[ $# -gt 0 ] && PKGS="$PKGS $*"

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
