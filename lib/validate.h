/*
 * validate.h - checks on an ipam.v1.Child before the api worker forwards it.
 *
 * A library so that the whole decoding and validation path can be
 * unit-tested and fuzzed without a gRPC server. The checks run in a fixed
 * order and stop at the first problem, whose status names the field. No
 * logging, no exit.
 */
#ifndef IPAM_VALIDATE_H
#define IPAM_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "bounds.h"
#include "config.h"
#include "grpcx.h"
#include "ipam/v1/ipam.pb-c.h"

/*
 * Checks a Child against the configuration: subnet, conduit and trench
 * present; name and node non-empty, bounded and UTF-8; a known family that
 * this instance serves; this instance's trench; a non-empty UTF-8 conduit
 * name. Fills st with the first problem (INVALID_ARGUMENT naming the field,
 * FAILED_PRECONDITION for a family not served, NOT_FOUND for another
 * trench) and returns its code; on success sets *family (4 or 6) and
 * returns GRPC_STATUS_OK.
 */
int validate_child(const struct cfg *cfg, const Ipam__V1__Child *ch,
    int *family, struct grpcx_status *st);

#endif
