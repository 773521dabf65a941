/*
 * fuzz.h - what every fuzz target shares: the entry points libFuzzer (or
 * replay.c) calls, and how a target reports a broken oracle.
 */
#ifndef IPAM_FUZZ_H
#define IPAM_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints "<target>: what: detail" and aborts: libFuzzer records the
 * input as a crash, and the replay test fails. */
static inline _Noreturn void
fuzz_fail(const char *what, const char *detail)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
	    detail);
	abort();
}

#endif
