/*
 * utf8.h - the one UTF-8 checker: for request fields and for log text.
 * No logging, no exit.
 */
#ifndef IPAM_UTF8_H
#define IPAM_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Length of the valid UTF-8 sequence at s (n bytes available, n > 0), or 0
 * if the bytes there do not start one.
 */
size_t utf8_seq(const unsigned char *s, size_t n);

/* True if s (len bytes) is well-formed UTF-8. */
bool utf8_valid(const char *s, size_t len);

#endif
