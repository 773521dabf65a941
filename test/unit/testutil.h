/*
 * testutil.h - helpers shared by the unit tests of the store and the
 * registry (include after criterion.h).
 */
#ifndef IPAM_TESTUTIL_H
#define IPAM_TESTUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A struct store_row from its six columns, in table order. */
#define TEST_ROW(i, n, c, p, t, e) { .id = (i), .name = (n), .cidr = (c), \
	.parent_id = (p), .updated_at = (t), .expirable = (e) }

/*
 * Makes a fresh directory <base>/<name>.XXXXXX into dir; base NULL means
 * $IPAM_TEST_TMP (made if missing: ctest names it) or else /tmp.
 */
static inline void
testutil_mkdtemp(char *dir, size_t len, const char *base, const char *name)
{
	if (base == NULL)
		base = getenv("IPAM_TEST_TMP");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(dir, len, "%s/%s.XXXXXX", base, name);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir,
	    strerror(errno));
}

/* nftw callback of testutil_rmtree. */
static inline int
testutil_rm(const char *path, const struct stat *sb, int flag,
    struct FTW *ftw)
{
	chmod(path, 0700);
	return remove(path);
}

/* Removes dir and all below it, even what a test made unreadable. */
static inline void
testutil_rmtree(const char *dir)
{
	chmod(dir, 0700);
	nftw(dir, testutil_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* Threads of this process. */
static inline int
testutil_threads(void)
{
	char line[256];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "r");

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

#endif
