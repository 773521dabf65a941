#!/bin/sh
# bench-alloc.sh <builddir> - builds and runs the allocator benchmark
# (test/bench/bench_alloc.c) and prints its table: the cost of allocating the
# k-th child of one IPv6 /64 node for k = 1k, 10k, 100k. Exits non-zero when
# the 100k figure is more than 1.5x the 1k one (the index must stay
# O(log n)). Extra arguments go to bench_alloc (cycles per round).
set -eu

if [ $# -lt 1 ]; then
	echo "usage: $0 <builddir> [cycles-per-round]" >&2
	exit 2
fi
dir=$1
shift

if [ ! -f "$dir/CMakeCache.txt" ]; then
	echo "bench-alloc: $dir is not a configured build directory" >&2
	exit 2
fi
cmake --build "$dir" --target bench_alloc >/dev/null

type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$dir/CMakeCache.txt")
echo "build type: ${type:-unset}"
out=$("$dir/test/bench_alloc" "$@")
echo "$out"

ratio=$(echo "$out" | sed -n 's/^alloc_flatness ratio_100k_over_1k=//p')
if [ -z "$ratio" ]; then
	echo "bench-alloc: no alloc_flatness line in the output" >&2
	exit 1
fi
if ! awk -v r="$ratio" 'BEGIN { exit !(r <= 1.5) }'; then
	echo "bench-alloc: 100k/1k ratio $ratio is above 1.5" >&2
	exit 1
fi
