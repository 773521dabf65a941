# bench-daemon.sh - sourced by bench.sh and bench-ab.sh: the daemon both
# benchmark scripts run (synchronous=FULL, 4 static conduits, 10.0.0.0/8
# and fd00::/48, GC off) on a free loopback port, and their CPU-per-call
# run.

bench_conduits=bench-c0,bench-c1,bench-c2,bench-c3

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_daemon <bindir> <datadir> <log>: starts meridio-ipam of bindir in
# the background with the environment in $extra_env, if any; sets $pid,
# $port, $target and $t0 (ns, just before the start). Waits for SERVING
# and sets $ready_ns; on failure prints the log's tail and returns 1.
bench_daemon() {
	port=$(free_port)
	target=127.0.0.1:$port
	mkdir -p "$2"
	t0=$(date +%s%N)
	# TMPDIR: its runtime directory beside its data, not a
	# /tmp/meridio-ipam.* that ipamctl would list among the user's instances.
	env TMPDIR="$2" IPAM_PORT="$port" IPAM_DATA_SOURCE="$2/registry.db" \
	    IPAM_CONDUITS="$bench_conduits" IPAM_NSP_SERVICE= \
	    IPAM_LOG_LEVEL=WARNING IPAM_TRENCH_NAME=default \
	    IPAM_PREFIX_IPV4=10.0.0.0/8 IPAM_CONDUIT_PREFIX_LENGTH_IPV4=12 \
	    IPAM_NODE_PREFIX_LENGTH_IPV4=20 IPAM_PREFIX_IPV6=fd00::/48 \
	    IPAM_CONDUIT_PREFIX_LENGTH_IPV6=56 IPAM_NODE_PREFIX_LENGTH_IPV6=64 \
	    IPAM_GARBAGE_COLLECTION_ENABLED=false IPAM_HEALTH_SOCKET= \
	    ${extra_env:-} \
	    "$1/meridio-ipam" >>"$3" 2>&1 &
	pid=$!
	if ! ready_out=$("$1/ipam-bench" ready --target "$target" --duration 20)
	then
		echo "bench: the daemon did not become SERVING; its log:" >&2
		tail -20 "$3" >&2
		return 1
	fi
	ready_ns=$(echo "$ready_out" | sed -n 's/.*ready_ns=\([0-9]*\).*/\1/p')
}

# field <line> <key>: the value of key=value in a machine-readable line.
field() {
	echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# bench_perf_works: true if perf stat can count task-clock here.
bench_perf_works() {
	perf stat -e task-clock -- true >/dev/null 2>&1
}

# bench_cpu_run <bindir> <mode> <target> <api pid> <db pid> <dir> <secs>:
# one ipam-bench run at concurrency 64 (no warm-up) with perf stat
# task-clock on the client, the api worker and the db worker, into
# <dir>/cpu-cl, cpu-api, cpu-db; its output in <dir>/cpu-out. Sets
# $cpu_calls to every call the run made (setup calls included: the
# workers served them too) and $cpu_line to its last line. Returns 1 if
# ipam-bench failed (its output on stderr).
bench_cpu_run() {
	rm -f "$6/cpu-cl" "$6/cpu-api" "$6/cpu-db"
	perf stat -x, -o "$6/cpu-api" -e task-clock -p "$4" >/dev/null 2>&1 &
	bench_pa=$!
	perf stat -x, -o "$6/cpu-db" -e task-clock -p "$5" >/dev/null 2>&1 &
	bench_pd=$!
	sleep 0.3
	if ! perf stat -x, -o "$6/cpu-cl" -e task-clock -- "$1/ipam-bench" \
	    "$2" --target "$3" --concurrency 64 --duration "$7" --warmup 0 \
	    --conduits "$bench_conduits" --nodes 64 --names 5000 \
	    >"$6/cpu-out"; then
		kill -INT "$bench_pa" "$bench_pd" 2>/dev/null || true
		wait "$bench_pa" "$bench_pd" 2>/dev/null || true
		cat "$6/cpu-out" >&2
		return 1
	fi
	kill -INT "$bench_pa" "$bench_pd" 2>/dev/null || true
	wait "$bench_pa" "$bench_pd" 2>/dev/null || true
	cpu_calls=$(sed -n 's/.*(\([0-9]*\) calls with the warm-up).*/\1/p' \
	    "$6/cpu-out")
	cpu_calls=$(( ${cpu_calls:-0} + $(sed -n \
	    's/^setup: \([0-9]*\) names.*/\1/p' "$6/cpu-out" | grep . ||
	    echo 0) ))
	cpu_line=$(tail -1 "$6/cpu-out")
}

# bench_us <perf output> <calls>: microseconds of task-clock per call
# ("-" when perf counted nothing).
bench_us() {
	awk -F, -v n="$2" '/task-clock/ && n > 0 {
	    printf "%.1f", $1 * 1000 / n; f = 1 }
	    END { if (!f) printf "-" }' "$1" 2>/dev/null || printf -- -
}
