#!/bin/sh
# One short run of the whole daemon under valgrind's memcheck: the
# supervisor and, through IPAMD_WORKER_WRAPPER, every worker, with the
# conduits from a fake NSP (test/integration/fakensp.py). The scenario
# allocates and releases in both families with ipamctl, then stops the
# daemon with SIGTERM. Fails unless every process reports no invalid access
# or use of uninitialised memory and no definite leak, and every worker's
# report is complete (it exited on its own, not by SIGKILL).
#
#   scripts/valgrind-run.sh [build-dir]     (default: build; not a sanitized one)
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
BIN=$BUILD/bin
"$TOP/scripts/deps.sh" valgrind

dir=$(mktemp -d /tmp/ipam-valgrind.XXXXXX)
pid=""
nsp=""
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
	[ -n "$nsp" ] && kill "$nsp" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
vg="valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite"
vg="$vg --track-origins=yes --num-callers=30 --log-file=$dir/vg.%p"
ctl() { "$BIN/ipamctl" "$@" --target "127.0.0.1:$port" --timeout 60s; }

IPAM_PYGEN=$BUILD/pygen /usr/bin/python3 "$TOP/test/integration/fakensp.py" 0 conduit-a \
	>"$dir/nsp.port" 2>"$dir/nsp.log" &
nsp=$!
i=0
until [ -s "$dir/nsp.port" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] && kill -0 "$nsp" 2>/dev/null || { cat "$dir/nsp.log" >&2; exit 1; }
	sleep 0.1
done

t0=$(date +%s)
env -i PATH=/usr/bin:/bin HOME=/ TMPDIR="$dir" IPAM_PORT="$port" \
	IPAM_DATA_SOURCE="$dir/registry.db" IPAM_NSP_SERVICE="127.0.0.1:$(cat "$dir/nsp.port")" \
	IPAM_LOG_LEVEL=INFO \
	IPAMD_WORKER_WRAPPER="$vg" \
	$vg "$BIN/meridio-ipam" >"$dir/daemon.log" 2>&1 &
pid=$!

# Up to two minutes to serve: gRPC starts slowly under valgrind.
i=0
until "$BIN/ipamctl" health --target "127.0.0.1:$port" --timeout 2s >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
		tail -n 40 "$dir/daemon.log" >&2
		echo "valgrind-run: daemon not serving" >&2
		exit 1
	fi
	sleep 1
done
# The conduit comes from the NSP through the nsp worker.
i=0
until a4=$(ctl allocate --conduit conduit-a --node n1 --name c1 --family ipv4 2>/dev/null); do
	i=$((i + 1))
	if [ $i -ge 60 ]; then
		tail -n 40 "$dir/daemon.log" >&2
		echo "valgrind-run: conduit-a never came from the NSP" >&2
		exit 1
	fi
	sleep 1
done
a6=$(ctl allocate --conduit conduit-a --node n1 --name c1 --family ipv6)
ctl allocate --conduit conduit-a --node n1 --name c2 --family ipv4 >/dev/null
# release goes through the admin socket (it says what it released).
[ "$("$BIN/ipamctl" release --conduit conduit-a --node n1 --name c2 \
    --family ipv4 --timeout 60s --admin "$(echo "$dir"/meridio-ipam.*/admin.sock)")" \
    != "" ]
[ "$(ctl allocate --conduit conduit-a --node n1 --name c1 --family ipv4)" = "$a4" ]
[ "$(ctl allocate --conduit conduit-a --node n1 --name c1 --family ipv6)" = "$a6" ]
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
if [ $rc -ne 0 ]; then
	tail -n 40 "$dir/daemon.log" >&2
	echo "valgrind-run: daemon exited $rc" >&2
	exit 1
fi
pid=""
took=$(($(date +%s) - t0))

bad=0
n=0
for f in "$dir"/vg.*; do
	n=$((n + 1))
	prog=$(sed -n 's/^==[0-9]*== Command: \([^ ]*\).*/\1/p' "$f" | head -n 1)
	if ! grep -q "ERROR SUMMARY: 0 errors" "$f"; then
		echo "valgrind-run: $(basename "$prog"): errors or no summary (killed?):" >&2
		cat "$f" >&2
		bad=1
	else
		lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$f")
		echo "valgrind: $(basename "$prog"): 0 errors, definitely lost ${lost:-0} bytes"
	fi
done
[ $n -eq 4 ] || { echo "valgrind-run: $n reports, expected 4 (supervisor, db, api, nsp)" >&2; bad=1; }
[ $bad -eq 0 ] || exit 1
echo "valgrind: whole run clean in ${took}s"
