/*
 * rbtree.h - libbsd's red-black trees (sys/tree.h) for the files that
 * expand RB_GENERATE_STATIC: it marks the helpers a file does not call
 * __unused, which libbsd leaves undefined (it clashes with Linux struct
 * members). Include it in .c files only, after every system header.
 */
#ifndef IPAM_RBTREE_H
#define IPAM_RBTREE_H

#include <sys/tree.h>

#ifndef __unused
#define __unused __attribute__((__unused__))
#endif

#endif
