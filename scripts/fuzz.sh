#!/bin/sh
# Builds the libFuzzer targets of test/fuzz with clang (ASan + UBSan +
# coverage) and runs each for a while on its committed seed corpus.
#
#   scripts/fuzz.sh [build-dir [seconds-per-target [target...]]]
#
# Defaults: build-fuzz-targets, 60 s, every target. Inputs libFuzzer finds
# go to <build-dir>/fuzz-corpus/<target>/ (kept between runs; the committed
# corpus is only read), crashes to <build-dir>/fuzz-artifacts/. Prints one
# line per target with the executions run; exits non-zero on the first
# target that fails (a crash, a sanitizer report, a leak or a timeout).
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build-fuzz-targets}
SECONDS_EACH=${2:-60}
[ $# -gt 2 ] && shift 2 && TARGETS="$*" || TARGETS="frame request cidr config"
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac

"$TOP/scripts/deps.sh" clang libclang-rt-14-dev
cmake -S "$TOP" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DIPAM_FUZZ=ON -DIPAM_TESTS=OFF >/dev/null
# shellcheck disable=SC2046
cmake --build "$BUILD" -j "$(nproc)" --target $(for t in $TARGETS; do echo "fuzz_$t"; done) >/dev/null

mkdir -p "$BUILD/fuzz-artifacts"
for t in $TARGETS; do
	work=$BUILD/fuzz-corpus/$t
	log=$BUILD/fuzz-artifacts/$t.log
	mkdir -p "$work"
	maxlen=8192 dict=""
	[ "$t" = cidr ] && maxlen=256
	[ -f "$TOP/test/fuzz/$t.dict" ] && dict="-dict=$TOP/test/fuzz/$t.dict"
	# shellcheck disable=SC2086
	if ! "$BUILD/bin/fuzz_$t" -max_total_time="$SECONDS_EACH" -max_len="$maxlen" \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$BUILD/fuzz-artifacts/$t-" $dict \
		"$work" "$TOP/test/fuzz/corpus/$t" >"$log" 2>&1; then
		tail -n 60 "$log" >&2
		echo "fuzz: $t FAILED (log: $log, input: $BUILD/fuzz-artifacts/$t-*)" >&2
		exit 1
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(sed -n 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*cov: \([0-9]*\).*/\1/p' "$log")
	printf 'fuzz: %-8s %10s runs in %ss, coverage %s edges, corpus %s files\n' \
		"$t" "$runs" "$SECONDS_EACH" "${cov:-?}" "$(ls "$work" | wc -l)"
done
