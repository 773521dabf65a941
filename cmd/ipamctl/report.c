/*
 * report.c - what ipamctl's read commands print: the tree (show), pool
 * usage (usage), the audit (check) and the export file, as text for
 * people or as JSON (json-c) for scripts.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "gotext.h"
#include "store.h"

#define CTL_JSON_FLAGS (JSON_C_TO_STRING_PRETTY | \
	JSON_C_TO_STRING_NOSLASHESCAPE)

/* What the used / usable counts of a level are, in show's text. */
static const char *const ctl_level_units[] = {
	"conduits", "nodes", "addresses",
};

/* Adds member key to o: the string v. */
static void
ctl_json_add(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

/* Prints a JSON document and frees it. Returns CTL_OK or CTL_RPC when
 * memory ran out while building it (doc NULL). */
static int
ctl_json_out(json_object *doc)
{
	if (doc == NULL) {
		fprintf(stderr, "ipamctl: out of memory\n");
		return CTL_RPC;
	}
	printf("%s\n", json_object_to_json_string_ext(doc, CTL_JSON_FLAGS));
	json_object_put(doc);
	return CTL_OK;
}

/*
 * A count as JSON: a number up to 2^53 (what a double, and so jq or
 * JavaScript, holds exactly), else a string of its decimal digits (the
 * addresses of an IPv6 node prefix).
 */
static json_object *
ctl_json_count(uint64_t v)
{
	char buf[24];

	if (v <= (1ULL << 53))
		return json_object_new_uint64(v);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	return json_object_new_string(buf);
}

/* updated_at as go-sqlite3 writes it, or JSON null when unknown (0). */
static json_object *
ctl_json_time(int64_t ns)
{
	char buf[GOTEXT_TIME_STRLEN];

	if (ns == 0)
		return NULL;
	gotext_format_time(ns, buf);
	return json_object_new_string(buf);
}

/* Percentage of used in usable (a full or over-full pool is >= 100). */
static double
ctl_percent(uint64_t used, uint64_t usable)
{
	if (usable == 0)
		return used > 0 ? 100.0 : 0.0;
	return 100.0 * (double)used / (double)usable;
}

/* The trench name from a trench record's name ("<trench>-0" / "-1"). */
static void
ctl_trench_name(const struct ctl_dump *d, char *buf, size_t len)
{
	size_t n;

	buf[0] = '\0';
	for (size_t i = 0; i < d->n; i++) {
		if (d->recs[i]->level != 0)
			continue;
		n = strlen(d->recs[i]->name);
		if (n >= 2 && d->recs[i]->name[n - 2] == '-')
			n -= 2;
		snprintf(buf, len, "%.*s", (int)n, d->recs[i]->name);
		return;
	}
}

void
ctl_json_source(json_object *doc, const Ipamadmin__V1__InfoReply *info)
{
	json_object *w;

	if (info == NULL)
		return;
	w = json_object_new_array();
	ctl_json_add(doc, "conduit_source", info->conduit_source);
	if (strcmp(info->conduit_source, "none") == 0)
		json_object_array_add(w,
		    json_object_new_string(CTL_NO_CONDUITS));
	json_object_object_add(doc, "warnings", w);
}

void
ctl_warn_source(const char *cmd, const Ipamadmin__V1__InfoReply *info)
{
	if (info != NULL && strcmp(info->conduit_source, "none") == 0)
		fprintf(stderr, "ipamctl: %s: warning: %s\n", cmd,
		    CTL_NO_CONDUITS);
}

/* ---- show --------------------------------------------------------------- */

/*
 * The refresh time of a record for people: UTC and age, the age in the
 * largest unit it has ("42s ago", "5m ago", "3h ago", "2d ago").
 */
static void
ctl_text_time(int64_t ns, char *buf, size_t len)
{
	static const struct { int64_t secs; char unit; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' },
	};
	time_t t = (time_t)(ns / 1000000000);
	int64_t age = (int64_t)time(NULL) - (int64_t)t;
	struct tm tm;
	char when[32];
	size_t i = 0;

	if (age < 0)
		age = 0;
	while (age < units[i].secs && units[i].secs > 1)
		i++;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(buf, len, "%s (%lld%c ago)", when,
	    (long long)(age / units[i].secs), units[i].unit);
}

/* One record of the tree as JSON (without its "below" list). */
static json_object *
ctl_json_record(const Ipamadmin__V1__Record *r, bool full)
{
	json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	ctl_json_add(o, "id", r->id);
	ctl_json_add(o, "name", r->name);
	ctl_json_add(o, "cidr", r->cidr);
	ctl_json_add(o, "parent_id", r->parent_id);
	json_object_object_add(o, "updated_at", ctl_json_time(r->updated_at));
	json_object_object_add(o, "expirable",
	    json_object_new_boolean(r->expirable));
	if (full) {
		json_object_object_add(o, "level",
		    json_object_new_int((int)r->level));
		if (r->level < 3) {
			json_object_object_add(o, "used",
			    ctl_json_count(r->children));
			json_object_object_add(o, "usable",
			    ctl_json_count(r->usable));
		}
	}
	return o;
}

/*
 * show --json: {"trench": T, "tree": [record + "below": [...]]}. Dump
 * order is depth first, parents first, so a stack of the open "below"
 * arrays by level rebuilds the tree.
 */
static int
ctl_show_json(const struct ctl_dump *d, const Ipamadmin__V1__InfoReply *info)
{
	json_object *doc = json_object_new_object(), *tree, *stack[4];
	char trench[256];

	if (doc == NULL)
		return ctl_json_out(NULL);
	ctl_trench_name(d, trench, sizeof(trench));
	ctl_json_add(doc, "trench", trench);
	ctl_json_source(doc, info);
	tree = json_object_new_array();
	json_object_object_add(doc, "tree", tree);
	memset(stack, 0, sizeof(stack));
	stack[0] = tree;
	for (size_t i = 0; i < d->n; i++) {
		const Ipamadmin__V1__Record *r = d->recs[i];
		unsigned lv = r->level > 3 ? 3 : r->level;
		json_object *o = ctl_json_record(r, true), *parent;

		if (o == NULL)
			continue;
		parent = stack[lv] != NULL ? stack[lv] : tree;
		json_object_array_add(parent, o);
		if (lv < 3) {
			json_object *below = json_object_new_array();

			json_object_object_add(o, "below", below);
			stack[lv + 1] = below;
			for (unsigned k = lv + 2; k < 4; k++)
				stack[k] = NULL;
		}
	}
	return ctl_json_out(doc);
}

int
ctl_print_show(const struct ctl_dump *d, bool json,
    const Ipamadmin__V1__InfoReply *info)
{
	char trench[256], when[80];

	if (json)
		return ctl_show_json(d, info);
	ctl_warn_source("show", info);
	ctl_trench_name(d, trench, sizeof(trench));
	printf("trench %s\n", trench[0] != '\0' ? trench : "(none)");
	for (size_t i = 0; i < d->n; i++) {
		const Ipamadmin__V1__Record *r = d->recs[i];
		unsigned lv = r->level > 3 ? 3 : r->level;

		printf("%*s%s  %s", (int)(2 * lv + 2), "", r->name, r->cidr);
		if (lv < 3)
			printf("  %s %llu/%llu (%.1f%%)", ctl_level_units[lv],
			    (unsigned long long)r->children,
			    (unsigned long long)r->usable,
			    ctl_percent(r->children, r->usable));
		if (lv >= 2 && r->updated_at != 0) {
			ctl_text_time(r->updated_at, when, sizeof(when));
			printf("  refreshed %s", when);
		}
		if (lv >= 2 && !r->expirable)
			printf("  never expires");
		putchar('\n');
	}
	return CTL_OK;
}

/* ---- usage -------------------------------------------------------------- */

/* One line of usage. */
struct ctl_use {
	const char *kind;		/* "conduit" or "node" */
	const char *family;		/* "ipv4" or "ipv6" */
	const char *conduit;		/* conduit name */
	const char *node;		/* node name, "" for a conduit */
	uint64_t used, usable;		/* child blocks */
	double percent;			/* used / usable */
	char uu[48];			/* "used/usable" */
};

/* Fullest first; then by conduit, node, family for a stable order. */
static int
ctl_use_cmp(const void *x, const void *y)
{
	const struct ctl_use *a = x, *b = y;
	int c;

	if (a->percent != b->percent)
		return a->percent > b->percent ? -1 : 1;
	if ((c = strcmp(a->conduit, b->conduit)) != 0)
		return c;
	if ((c = strcmp(a->node, b->node)) != 0)
		return c;
	return strcmp(a->family, b->family);
}

int
ctl_print_usage(const struct ctl_dump *d, bool json)
{
	struct ctl_use *v;
	const Ipamadmin__V1__Record *conduit = NULL;
	size_t n = 0;
	int rc = CTL_OK;

	v = calloc(d->n + 1, sizeof(*v));
	if (v == NULL) {
		fprintf(stderr, "ipamctl: out of memory\n");
		return CTL_RPC;
	}
	for (size_t i = 0; i < d->n; i++) {
		const Ipamadmin__V1__Record *r = d->recs[i];
		struct ctl_use *u = &v[n];

		if (r->level == 1)
			conduit = r;
		if (r->level != 1 && r->level != 2)
			continue;
		u->kind = r->level == 1 ? "conduit" : "node";
		u->family = strchr(r->cidr, ':') != NULL ? "ipv6" : "ipv4";
		u->conduit = r->level == 1 ? r->name : conduit != NULL &&
		    strcmp(conduit->id, r->parent_id) == 0 ? conduit->name : "?";
		u->node = r->level == 2 ? r->name : "";
		u->used = r->children;
		u->usable = r->usable;
		u->percent = ctl_percent(r->children, r->usable);
		snprintf(u->uu, sizeof(u->uu), "%llu/%llu",
		    (unsigned long long)u->used, (unsigned long long)u->usable);
		n++;
	}
	qsort(v, n, sizeof(*v), ctl_use_cmp);
	if (json) {
		json_object *doc = json_object_new_object();
		json_object *arr = json_object_new_array();

		json_object_object_add(doc, "usage", arr);
		for (size_t i = 0; i < n; i++) {
			json_object *o = json_object_new_object();

			ctl_json_add(o, "kind", v[i].kind);
			ctl_json_add(o, "family", v[i].family);
			ctl_json_add(o, "conduit", v[i].conduit);
			ctl_json_add(o, "node", v[i].node);
			json_object_object_add(o, "used",
			    ctl_json_count(v[i].used));
			json_object_object_add(o, "usable",
			    ctl_json_count(v[i].usable));
			json_object_object_add(o, "percent",
			    json_object_new_double(v[i].percent));
			json_object_array_add(arr, o);
		}
		rc = ctl_json_out(doc);
	} else {
		/* Columns as wide as their widest cell: IPv6 counts have
		 * 20 digits, names up to 253 characters. */
		int wc = 7, wn = 4, wu = 11, k;

		for (size_t i = 0; i < n; i++) {
			if ((k = (int)strlen(v[i].conduit)) > wc)
				wc = k;
			if ((k = (int)strlen(v[i].node)) > wn)
				wn = k;
			if ((k = (int)strlen(v[i].uu)) > wu)
				wu = k;
		}
		printf("%-7s  %-6s  %-*s  %-*s  %*s  %7s\n", "KIND",
		    "FAMILY", wc, "CONDUIT", wn, "NODE", wu, "USED/USABLE",
		    "PERCENT");
		for (size_t i = 0; i < n; i++)
			printf("%-7s  %-6s  %-*s  %-*s  %*s  %6.1f%%\n",
			    v[i].kind, v[i].family, wc, v[i].conduit, wn,
			    v[i].node[0] != '\0' ? v[i].node : "-", wu, v[i].uu,
			    v[i].percent);
	}
	free(v);
	return rc;
}

/* ---- export ------------------------------------------------------------- */

int
ctl_print_export(const struct ctl_dump *d)
{
	json_object *doc = json_object_new_object(), *arr;
	char trench[256];

	if (doc == NULL)
		return ctl_json_out(NULL);
	ctl_trench_name(d, trench, sizeof(trench));
	ctl_json_add(doc, "format", CTL_EXPORT_FORMAT);
	ctl_json_add(doc, "trench", trench);
	arr = json_object_new_array();
	json_object_object_add(doc, "records", arr);
	for (size_t i = 0; i < d->n; i++)
		json_object_array_add(arr, ctl_json_record(d->recs[i], false));
	return ctl_json_out(doc);
}

/* ---- check -------------------------------------------------------------- */

int
ctl_print_check(const Ipamadmin__V1__CheckReport *r, bool json)
{
	int rc = r->n_problems > 0 ? CTL_RPC : CTL_OK;

	if (json) {
		json_object *doc = json_object_new_object();
		json_object *arr = json_object_new_array();

		json_object_object_add(doc, "ok",
		    json_object_new_boolean(r->n_problems == 0));
		json_object_object_add(doc, "records",
		    ctl_json_count(r->records));
		json_object_object_add(doc, "problems", arr);
		for (size_t i = 0; i < r->n_problems; i++) {
			json_object *o = json_object_new_object();

			ctl_json_add(o, "id", r->problems[i]->id);
			ctl_json_add(o, "kind", r->problems[i]->kind);
			ctl_json_add(o, "what", r->problems[i]->what);
			json_object_array_add(arr, o);
		}
		return ctl_json_out(doc) != CTL_OK ? CTL_RPC : rc;
	}
	if (rc == CTL_OK)
		printf("ok: %llu records\n", (unsigned long long)r->records);
	for (size_t i = 0; i < r->n_problems; i++)
		printf("%s %s: %s\n", r->problems[i]->kind, r->problems[i]->id,
		    r->problems[i]->what);
	return rc;
}
