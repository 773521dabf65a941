#!/bin/sh
# bench-ab.sh <builddir A> <builddir B> [mode] [rounds] - two builds side
# by side. Single benchmark runs on a shared machine move by 20-40 %
# between minutes; this starts one daemon of each build, fills both with
# AB_FILL (30000) allocations, then runs `ipam-bench <mode>` (default
# allocate-new) at concurrency 64 for 3 s against A, then B, `rounds`
# times (default 6), with perf stat on each daemon's api and db workers
# when perf works (bench_cpu_run, as bench.sh's CPU per call). Prints
# each run and the means, B over A.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 <builddir A> <builddir B> [mode] [rounds]" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-daemon.sh"
binA=$(cd "$1" && pwd)/bin
binB=$(cd "$2" && pwd)/bin
mode=${3:-allocate-new}
rounds=${4:-6}
bench="$binA/ipam-bench"
tmp=$(mktemp -d /tmp/ipam-bench-ab.XXXXXX)
pidA=
pidB=

cleanup() {
	for p in $pidA $pidB; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for x in A B; do
	eval "bin=\$bin$x"
	bench_daemon "$bin" "$tmp/$x" "$tmp/$x.log" || exit 1
	eval "pid$x=$pid; target$x=$target"
	"$bench" allocate-new --target "$target" --concurrency 64 \
	    --count "${AB_FILL:-30000}" --conduits "$bench_conduits" \
	    --nodes 64 >/dev/null
done

if bench_perf_works; then perf=yes; else perf=no; fi
echo "A: $1  B: $2  mode: $mode at concurrency 64, $rounds rounds of 3 s"
for r in $(seq "$rounds"); do
	for x in A B; do
		eval "p=\$pid$x; t=\$target$x"
		if [ "$perf" = yes ]; then
			bench_cpu_run "$binA" "$mode" "$t" \
			    "$(pgrep -P "$p" -x meridio-ipam-ap)" \
			    "$(pgrep -P "$p" -x meridio-ipam-db)" "$tmp" 3 || exit 1
			line=$cpu_line
			api_us=$(bench_us "$tmp/cpu-api" "$cpu_calls")
			db_us=$(bench_us "$tmp/cpu-db" "$cpu_calls")
		else
			line=$("$bench" "$mode" --target "$t" --concurrency 64 \
			    --duration 3 --warmup 0 --conduits "$bench_conduits" \
			    --nodes 64 --names 5000 | tail -1)
			api_us=-
			db_us=-
		fi
		echo "$x round $r: calls/s $(field "$line" ops_per_s) p99_us" \
		    "$(field "$line" p99_us) api_us $api_us db_us $db_us" |
		    tee -a "$tmp/runs"
	done
done
awk '{ n[$1]++; ops[$1] += $5; if ($9 != "-") { api[$1] += $9; na[$1]++ }
    if ($11 != "-") { db[$1] += $11; nd[$1]++ } }
    END {
	for (x in n) printf "%s mean: calls/s %.0f api_us %s db_us %s\n", x,
	    ops[x] / n[x], na[x] ? sprintf("%.1f", api[x] / na[x]) : "-",
	    nd[x] ? sprintf("%.1f", db[x] / nd[x]) : "-"
	if (ops["A"] > 0) printf "B/A calls/s: %.3f\n", ops["B"] / n["B"] / (ops["A"] / n["A"])
    }' "$tmp/runs"
