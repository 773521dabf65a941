#!/bin/sh
# CI's second test stage, after `make test` (issue 4, "Bad input"):
#  1. the whole ctest suite again on an ASan + UBSan build (build-asan):
#     unit tests and the Python integration tests, which then drive the
#     sanitized daemon (IPAM_BIN_DIR is build-asan/bin). Every sanitized
#     program writes its reports to build-asan/sanitizer-logs/ whatever
#     environment a test gives it (test/sanitize/sanitizer_defaults.c), so a
#     report from a worker that a test killed or whose stderr it dropped
#     still fails this stage;
#  2. every libFuzzer target for FUZZ_SECONDS (10) on its committed corpus;
#  3. the daemon under valgrind for one short scenario, on the normal build
#     (build, from `make test`).
# Prints how long each stage took.
#
# Left out of stage 1: integration.deploy_image and integration.deploy_systemd.
# They check the release packaging (a container built from source with its
# own compiler flags; the systemd unit's syscall filter traced with strace),
# and a sanitizer runtime adds libraries and syscalls of its own by design.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
ASAN_BUILD=${ASAN_BUILD:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz-targets}
NORMAL_BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
JOBS=${JOBS:-$(nproc)}
EXCLUDE='^integration\.deploy_(image|systemd)$'

scripts/deps.sh clang libclang-rt-14-dev valgrind strace

t0=$(date +%s)
cmake -S . -B "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=Debug -DIPAM_SANITIZE=ON >/dev/null
cmake --build "$ASAN_BUILD" -j "$JOBS" >/dev/null
logs=$ASAN_BUILD/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
chmod 1777 "$logs"	# tests also run the daemon as other uids (nobody)
# For the unit tests (criterion): leaks too, and the first report stops.
export ASAN_OPTIONS=detect_leaks=1:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rc=0
ctest --test-dir "$ASAN_BUILD" --output-on-failure -j "$JOBS" -E "$EXCLUDE" || rc=$?
unset ASAN_OPTIONS UBSAN_OPTIONS
found=0
for f in "$logs"/*; do
	[ -s "$f" ] || continue
	echo "==== sanitizer report $f ====" >&2
	cat "$f" >&2
	found=1
done
if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
	echo "ci-sanitize: sanitized test suite FAILED (ctest $rc, reports: $found)" >&2
	exit 1
fi
t1=$(date +%s)
echo "ci-sanitize: ASan+UBSan suite clean in $((t1 - t0))s"

scripts/fuzz.sh "$FUZZ_BUILD" "$FUZZ_SECONDS"
t2=$(date +%s)
echo "ci-sanitize: fuzz targets clean in $((t2 - t1))s"

scripts/valgrind-run.sh "$NORMAL_BUILD"
t3=$(date +%s)
echo "ci-sanitize: valgrind run clean in $((t3 - t2))s"
echo "ci-sanitize: all stages in $((t3 - t0))s"
