/*
 * configjson.h - a configuration printed as JSON. No logging, no exit.
 */
#ifndef IPAM_CONFIGJSON_H
#define IPAM_CONFIGJSON_H

#include "config.h"

/* The effective configuration as a JSON object (for --debug). Caller frees.
 * NULL on out of memory. */
char *configjson_text(const struct cfg *c);

#endif
