/*
 * slab.c - small objects of equal size cut from 16 KiB blocks; see slab.h.
 */
#include "slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of one slab: a 16 KiB malloc chunk with glibc's header. */
#define SLAB_BYTES (16384 - 16)

/* One slab. */
struct slab {
	struct slab *next, *prev;	/* in its class's list of slabs with a
					 * free slot */
	void *free;			/* freed slots, linked through their
					 * first word */
	uint32_t live;			/* slots in use */
	uint32_t fresh;			/* slots from here on never used */
	uint32_t cls;			/* slab class */
	uint32_t nslots;		/* slots in mem */
	char mem[];			/* the slots */
};

/* Slot size of a class. */
static size_t
slab_slot(unsigned cls)
{
	return SLAB_MIN + (size_t)cls * SLAB_STEP;
}

/* The class of a record of size bytes, or -1 when malloc serves it. */
int
slab_class(size_t size)
{
	if (size > SLAB_MAX)
		return -1;
	if (size < SLAB_MIN)
		size = SLAB_MIN;
	return (int)((size - SLAB_MIN + SLAB_STEP - 1) / SLAB_STEP);
}

/* Puts s at the head of its class's list of slabs with room. */
static void
slab_room_add(struct slab_set *sl, struct slab *s)
{
	s->prev = NULL;
	s->next = sl->room[s->cls];
	if (s->next != NULL)
		s->next->prev = s;
	sl->room[s->cls] = s;
}

/* Takes s out of its class's list of slabs with room. */
static void
slab_room_del(struct slab_set *sl, struct slab *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sl->room[s->cls] = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

/* How many slabs start at or below address p (binary search). */
static size_t
slab_upper(const struct slab_set *sl, const void *p)
{
	size_t lo = 0, hi = sl->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((uintptr_t)sl->all[mid] <= (uintptr_t)p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A new empty slab of class cls, listed everywhere. NULL on no memory. */
static struct slab *
slab_new(struct slab_set *sl, unsigned cls)
{
	struct slab *s, **v;
	size_t i, cap;

	if (sl->n == sl->cap) {
		cap = sl->cap != 0 ? sl->cap * 2 : 16;
		if ((v = realloc(sl->all, cap * sizeof(*v))) == NULL)
			return NULL;
		sl->all = v;
		sl->cap = cap;
	}
	if ((s = malloc(SLAB_BYTES)) == NULL)
		return NULL;
	s->free = NULL;
	s->live = s->fresh = 0;
	s->cls = cls;
	s->nslots = (uint32_t)((SLAB_BYTES - offsetof(struct slab, mem)) /
	    slab_slot(cls));
	i = slab_upper(sl, s);
	memmove(&sl->all[i + 1], &sl->all[i], (sl->n - i) * sizeof(*sl->all));
	sl->all[i] = s;
	sl->n++;
	slab_room_add(sl, s);
	return s;
}

/* A slot of class cls, or NULL. */
void *
slab_get(struct slab_set *sl, unsigned cls)
{
	struct slab *s = sl->room[cls];
	void *p;

	if (s == NULL && (s = slab_new(sl, cls)) == NULL)
		return NULL;
	if (s->free != NULL) {
		p = s->free;
		memcpy(&s->free, p, sizeof(s->free));
	} else {
		p = s->mem + (size_t)s->fresh++ * slab_slot(cls);
	}
	if (++s->live == s->nslots)
		slab_room_del(sl, s);
	return p;
}

/* Gives slot p back; an empty slab goes back to malloc. */
void
slab_put(struct slab_set *sl, void *p)
{
	size_t i = slab_upper(sl, p);
	struct slab *s = sl->all[i - 1];

	if (s->live == s->nslots)
		slab_room_add(sl, s);
	memcpy(p, &s->free, sizeof(s->free));
	s->free = p;
	if (--s->live > 0)
		return;
	slab_room_del(sl, s);
	memmove(&sl->all[i - 1], &sl->all[i], (sl->n - i) * sizeof(*sl->all));
	sl->n--;
	free(s);
}

/* Frees every slab. */
void
slab_free_all(struct slab_set *sl)
{
	size_t i;

	for (i = 0; i < sl->n; i++)
		free(sl->all[i]);
	free(sl->all);
	memset(sl, 0, sizeof(*sl));
}
