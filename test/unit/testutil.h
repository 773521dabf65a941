/*
 * testutil.h - helpers shared by the unit tests of the store and the
 * registry.
 */
#ifndef IPAM_TESTUTIL_H
#define IPAM_TESTUTIL_H

/* A struct store_row from its six columns, in table order. */
#define TEST_ROW(i, n, c, p, t, e) { .id = (i), .name = (n), .cidr = (c), \
	.parent_id = (p), .updated_at = (t), .expirable = (e) }

#endif
