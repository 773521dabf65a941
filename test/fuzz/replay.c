/*
 * replay.c - a main() for the fuzz targets in builds without libFuzzer.
 *
 * Runs the target once on every file named on the command line, or on
 * every file below a directory named there, the way libFuzzer replays a
 * corpus. ctest runs each target over its committed corpus this way, so
 * the seeds stay regression tests in every build (gcc included) and under
 * the sanitized build. A failed check inside a target aborts, which fails
 * the test.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Only some targets have one. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay_count;	/* inputs replayed so far */

/* An nftw callback: runs the target on the whole of a regular file (a
 * copy of exactly its size, so ASan sees any read past the end). Files
 * in a directory whose names start with '.' are skipped. 0, or -1 when
 * the file cannot be read. */
static int
replay_file(const char *path, const struct stat *st, int type,
    struct FTW *ftw)
{
	FILE *f;
	uint8_t *buf;
	size_t n = (size_t)st->st_size;
	int rc = -1;

	if (type != FTW_F || (ftw->level > 0 && path[ftw->base] == '.'))
		return 0;
	if ((f = fopen(path, "rb")) == NULL)
		goto out;
	if ((buf = malloc(n > 0 ? n : 1)) != NULL &&
	    fread(buf, 1, n, f) == n) {
		LLVMFuzzerTestOneInput(buf, n);
		replay_count++;
		rc = 0;
	}
	free(buf);
	fclose(f);
out:
	if (rc != 0)
		fprintf(stderr, "replay: cannot read %s\n", path);
	return rc;
}

int
main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (nftw(argv[i], replay_file, 16, 0) != 0) {
			fprintf(stderr, "replay: cannot replay %s\n", argv[i]);
			return 1;
		}
	}
	if (replay_count == 0) {
		fprintf(stderr, "replay: no input replayed\n");
		return 1;
	}
	printf("replay: %d inputs, no failure\n", replay_count);
	return 0;
}
