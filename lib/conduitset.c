/*
 * conduitset.c - the NSP worker's "seen in this run" set and list diff.
 *
 * The set is an ordered tree (libbsd sys/tree.h) keyed by name. Each entry
 * carries the generation of the latest list that named it; a list bumps the
 * generation, so after marking, every entry with an older generation is a
 * conduit that was seen before and is missing now.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conduitset.h"
#include "rbtree.h"

/* One remembered conduit. */
struct cs_entry {
	RB_ENTRY(cs_entry) link;	/* tree linkage, ordered by name */
	uint64_t gen;			/* generation of the last list naming it */
	const char *name;		/* the conduit name, stored after the entry */
};

RB_HEAD(cs_tree, cs_entry);

struct conduitset {
	struct cs_tree tree;		/* every remembered conduit */
	uint64_t gen;			/* generation of the latest list */
	size_t nlisted;			/* distinct names in the latest list */
	size_t nseen;			/* entries in tree */
};

static int
cs_cmp(const struct cs_entry *a, const struct cs_entry *b)
{
	return strcmp(a->name, b->name);
}

RB_GENERATE_STATIC(cs_tree, cs_entry, link, cs_cmp)

/* Finds the entry for name, or NULL. */
static struct cs_entry *
cs_find(const struct conduitset *s, const char *name)
{
	struct cs_entry key = { .name = name };

	return RB_FIND(cs_tree, (struct cs_tree *)&s->tree, &key);
}

struct conduitset *
conduitset_new(void)
{
	struct conduitset *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	RB_INIT(&s->tree);
	return s;
}

void
conduitset_free(struct conduitset *s)
{
	struct cs_entry *e, *next;

	if (s == NULL)
		return;
	for (e = RB_MIN(cs_tree, &s->tree); e != NULL; e = next) {
		next = RB_NEXT(cs_tree, &s->tree, e);
		RB_REMOVE(cs_tree, &s->tree, e);
		free(e);
	}
	free(s);
}

/* True if name is acceptable as a conduit: 1 to BOUNDS_LABEL_MAX bytes. */
static bool
conduitset_name_ok(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strnlen(name, BOUNDS_LABEL_MAX + 1);
	return len > 0 && len <= BOUNDS_LABEL_MAX;
}

void
conduitset_diff_clear(struct conduitset_diff *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->nadd; i++)
		free(d->add[i]);
	for (i = 0; i < d->nremove; i++)
		free(d->remove[i]);
	free(d->add);
	free(d->remove);
	memset(d, 0, sizeof(*d));
}

/*
 * Marks each valid listed name with the new generation (inserting names
 * never seen before) and collects them, first occurrence first, into
 * d->add; then collects every entry left with an older generation into
 * d->remove. Entries are kept until conduitset_commit, so a removal that
 * did not reach the db is reported again by the next list.
 */
int
conduitset_diff(struct conduitset *s, const char *const *names, size_t n,
    struct conduitset_diff *d)
{
	struct cs_entry *e;
	size_t i, len, nold;
	uint64_t gen;

	memset(d, 0, sizeof(*d));
	if (n > CONDUITSET_MAX) {
		errno = E2BIG;
		return -1;
	}
	gen = ++s->gen;
	s->nlisted = 0;
	if (n > 0 && (d->add = calloc(n, sizeof(*d->add))) == NULL)
		goto nomem;

	for (i = 0; i < n; i++) {
		if (!conduitset_name_ok(names[i])) {
			d->nskipped++;
			continue;
		}
		e = cs_find(s, names[i]);
		if (e == NULL) {
			len = strlen(names[i]);
			if ((e = malloc(sizeof(*e) + len + 1)) == NULL)
				goto nomem;
			memcpy(e + 1, names[i], len + 1);
			e->name = (const char *)(e + 1);
			e->gen = 0;
			RB_INSERT(cs_tree, &s->tree, e);
			s->nseen++;
		}
		if (e->gen == gen) {
			d->ndup++;
			continue;
		}
		e->gen = gen;
		s->nlisted++;
		if ((d->add[d->nadd] = strdup(e->name)) == NULL)
			goto nomem;
		d->nadd++;
	}

	nold = s->nseen - s->nlisted;
	if (nold > 0 && (d->remove = calloc(nold, sizeof(*d->remove))) == NULL)
		goto nomem;
	RB_FOREACH(e, cs_tree, &s->tree) {
		if (e->gen == gen)
			continue;
		if ((d->remove[d->nremove] = strdup(e->name)) == NULL)
			goto nomem;
		d->nremove++;
	}
	return 0;

nomem:
	conduitset_diff_clear(d);
	errno = ENOMEM;
	return -1;
}

void
conduitset_commit(struct conduitset *s, const struct conduitset_diff *d)
{
	struct cs_entry *e;
	size_t i;

	for (i = 0; i < d->nremove; i++) {
		e = cs_find(s, d->remove[i]);
		if (e == NULL || e->gen == s->gen)
			continue;
		RB_REMOVE(cs_tree, &s->tree, e);
		free(e);
		s->nseen--;
	}
}

size_t
conduitset_listed(const struct conduitset *s)
{
	return s->nlisted;
}

size_t
conduitset_seen(const struct conduitset *s)
{
	return s->nseen;
}

bool
conduitset_contains(const struct conduitset *s, const char *name)
{
	return cs_find(s, name) != NULL;
}
