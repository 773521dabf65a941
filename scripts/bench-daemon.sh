# bench-daemon.sh - sourced by bench.sh and bench-ab.sh: the daemon both
# benchmark scripts run (synchronous=FULL, 4 static conduits, 10.0.0.0/8
# and fd00::/48, GC off) on a free loopback port.

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
	env IPAM_PORT="$port" IPAM_DATA_SOURCE="$2/registry.db" \
	    IPAM_CONDUITS="$bench_conduits" IPAM_NSP_SERVICE= \
	    IPAM_LOG_LEVEL=WARNING IPAM_TRENCH_NAME=default \
	    IPAM_PREFIX_IPV4=10.0.0.0/8 IPAM_CONDUIT_PREFIX_LENGTH_IPV4=12 \
	    IPAM_NODE_PREFIX_LENGTH_IPV4=20 IPAM_PREFIX_IPV6=fd00::/48 \
	    IPAM_CONDUIT_PREFIX_LENGTH_IPV6=56 IPAM_NODE_PREFIX_LENGTH_IPV6=64 \
	    IPAM_GARBAGE_COLLECTION_ENABLED=false ${extra_env:-} \
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
