#!/bin/sh
# What `make run` runs: meridio-ipam in the foreground, for a demo or a
# bare-metal test node. Data lives under ./run/ (created); static conduits
# stand in for the NSP service unless the caller names one in
# IPAM_NSP_SERVICE (IPAM_CONDUITS, when set, selects static conduits and no
# NSP). Every IPAM_* variable set by the caller wins.
#   usage: scripts/run.sh [builddir]      (default: build)
set -eu

build=${1:-build}
daemon="$build/bin/meridio-ipam"
ctl="$build/bin/ipamctl"

if [ ! -x "$daemon" ]; then
	echo "run: $daemon is not built yet (run: make build)" >&2
	exit 1
fi

mkdir -p run
# The admin socket at a fixed place, so that the printed release command
# names this instance even when others run on the machine.
if [ -z "${RUNTIME_DIRECTORY:-}" ]; then
	mkdir -p -m 0700 run/rt
	RUNTIME_DIRECTORY="$(pwd)/run/rt"
	export RUNTIME_DIRECTORY
fi
if [ -z "${IPAM_DATA_SOURCE:-}" ] && [ -z "${IPAM_DATASOURCE:-}" ]; then
	IPAM_DATA_SOURCE="$(pwd)/run/registry.db"
	export IPAM_DATA_SOURCE
fi
: "${IPAM_PORT:=7777}"
: "${IPAM_LOG_LEVEL:=INFO}"
if [ -z "${IPAM_NSP_SERVICE:-}" ] && [ -z "${IPAM_CONDUITS:-}" ]; then
	IPAM_CONDUITS=conduit-a,conduit-b
fi
export IPAM_PORT IPAM_LOG_LEVEL
if [ -n "${IPAM_CONDUITS:-}" ]; then
	export IPAM_CONDUITS
	conduits="$IPAM_CONDUITS (static)"
	conduit=${IPAM_CONDUITS%%,*}
else
	export IPAM_NSP_SERVICE
	conduits="from NSP $IPAM_NSP_SERVICE"
	conduit=conduit-a
fi

target="127.0.0.1:$IPAM_PORT"
cat <<MSG
meridio-ipam: gRPC on port $IPAM_PORT, data ${IPAM_DATA_SOURCE:-$IPAM_DATASOURCE}
  conduits: $conduits; logs: JSON lines on stderr, level $IPAM_LOG_LEVEL
Talk to it from another shell:
  $ctl allocate --conduit $conduit --node worker-1 --name proxy-1 --target $target
  $ctl allocate --conduit $conduit --node worker-1 --name proxy-1 --family ipv6 --target $target
  $ctl release  --conduit $conduit --node worker-1 --name proxy-1 --admin $RUNTIME_DIRECTORY/admin.sock
  $ctl health --target $target
Ctrl-C stops it (orderly: exit 0).
MSG

exec "$daemon"
