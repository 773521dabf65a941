/*
 * sanitizer_defaults.c - built into every program of a sanitized build
 * (IPAM_SANITIZE=ON), never into a normal one.
 *
 * Tests start the programs with environments of their own (some keep only
 * PATH), so options passed by the CI script through ASAN_OPTIONS would not
 * reach every process. These hooks give each sanitized process the same
 * defaults: reports go to files in IPAM_SANITIZER_LOG (the build tree's
 * sanitizer-logs/), which scripts/ci-sanitize.sh requires to stay empty.
 * An environment variable still overrides any of them.
 *
 * The one suppression is a leak inside c-ares 1.18 (Debian 12): resolving
 * "localhost" through ares_gethostbyname loses a 10-byte ares_strdup copy
 * of the name (c-ares issue #439). gRPC's resolver makes that call when a
 * client targets localhost:port; allocation and loss are both inside
 * libcares, no frame of ours holds the pointer.
 */

/* The sanitizer runtimes look these up by name: no module prefix. */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *
__asan_default_options(void)
{
	return "detect_leaks=1:print_suppressions=0:log_path="
	    IPAM_SANITIZER_LOG "/asan";
}

const char *
__ubsan_default_options(void)
{
	return "print_stacktrace=1:log_path=" IPAM_SANITIZER_LOG "/ubsan";
}

const char *
__lsan_default_suppressions(void)
{
	return "leak:libcares.so\n";
}
