/*
 * errbuf.h - how lib/ modules report an error: a message written into the
 * caller's buffer (which may be NULL or empty: then nothing is written).
 * Library code never logs; the program that called it logs once.
 */
#ifndef IPAM_ERRBUF_H
#define IPAM_ERRBUF_H

#include <stddef.h>

/* printf into err (at most errlen bytes, always terminated). */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
