/*
 * bounds.h - the longest names and messages meridio-ipam accepts.
 *
 * One place for the bounds that the api worker's validation, the db
 * worker, the configuration and the registry all rely on, so that a name
 * one process accepts fits in every process behind it and is refused the
 * same way by each. Lengths are in bytes and do not count a NUL. (Not
 * named limits.h: lib/ is on the include path and would hide <limits.h>.)
 */
#ifndef IPAM_BOUNDS_H
#define IPAM_BOUNDS_H

/*
 * Trench, conduit and node names: the longest DNS subdomain name, which is
 * also the longest name Kubernetes gives an object or a node; Meridio takes
 * these names from Kubernetes objects.
 */
#define BOUNDS_LABEL_MAX 253

/*
 * Child names: a child is named by its caller (a proxy or target pod name
 * with a prefix), so it may be longer than one label; twice a label keeps
 * room for any such name while keeping a record id bounded.
 */
#define BOUNDS_CHILD_MAX 512

/*
 * A record id, "<name>-<parent id>", with its NUL. The deepest one is a
 * child's: one child name, three labels (node, conduit, trench) and three
 * dashes; the buffer is larger so that ids read back from a database
 * written by another implementation can be checked before they are refused.
 */
#define BOUNDS_ID_MAX 2048

/*
 * One frame on an internal Unix socket: a Dump reply carries up to a
 * thousand records of a few hundred bytes; larger lengths are refused
 * before anything is allocated.
 */
#define BOUNDS_FRAME_MAX (1u << 20)

/*
 * One request body on the public gRPC port: an ipam.v1 Child is at most
 * a few names (see above), so 64 KiB is ample and bounds what a client
 * can make the api worker decode.
 */
#define BOUNDS_API_MESSAGE_MAX 65536

/* One request body on the admin port: a filter or a release, tiny. */
#define BOUNDS_ADMIN_MESSAGE_MAX 4096

_Static_assert(BOUNDS_CHILD_MAX + 3 * BOUNDS_LABEL_MAX + 3 + 1 <=
    BOUNDS_ID_MAX, "a child's record id must fit in BOUNDS_ID_MAX");

#endif
