/*
 * idmap.h: the map from a game's uint64 entity id to the space's dense uint32 slot. Any
 * uint64 is a valid key (0 and 2^64-1 included). Open addressing with linear probing and
 * backward-shift deletion, so lookups never wade through tombstones.
 *
 * Games mostly number their entities from small integers up, so small ids also get a plain
 * array: an id below `ndense` is looked up as dense[id], one load from an array a quarter
 * of the table's size. The array covers ids up to about DENSE_SPREAD times the number of
 * entries (it grows, taking over the table's entries below its new end, when an id just
 * past it comes in and the entries are that many); other ids go to the table. The array
 * does not shrink: at most 4 bytes for each id below four times the most entries held.
 *
 * Public: the server keeps its entity -> owner map in one. The struct is visible so that
 * lookups inline (they are on every event's path); only the functions below touch it.
 */
#pragma once

#include "base/common.h"

/* One bucket: key and value side by side, so that a lookup costs one cache line. */
typedef struct sl_idmap_slot {
    uint64_t key;
    uint32_t val;           /* UINT32_MAX marks an empty bucket */
    uint32_t unused;
} sl_idmap_slot;

typedef struct sl_idmap {
    sl_idmap_slot *slots;
    uint32_t mask;          /* capacity - 1 (capacity is a power of two), or 0 when empty */
    uint32_t n;             /* entries, in both parts */
    uint32_t hn;            /* entries in the table */
    uint32_t ndense;        /* ids below this live in dense[] (UINT32_MAX: absent) */
    uint32_t *dense;
} sl_idmap;

/* A 64-bit finaliser (from splitmix64): sequential ids spread over the whole table. */
static inline uint64_t sl_idmap_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* The table's part of a lookup (ids at or past ndense). */
uint32_t sl_idmap_get_hashed(const sl_idmap *m, uint64_t id);
/* Returns the slot of id, or UINT32_MAX when absent. */
static inline uint32_t sl_idmap_get(const sl_idmap *m, uint64_t id)
{
    return id < m->ndense ? m->dense[id] : sl_idmap_get_hashed(m, id);
}
/* Starts loading what a lookup of id reads first (a hint; never faults). */
static inline void sl_idmap_prefetch(const sl_idmap *m, uint64_t id)
{
    if (id < m->ndense)
        __builtin_prefetch(&m->dense[id]);
    else if (m->hn)
        __builtin_prefetch(&m->slots[(uint32_t)sl_idmap_mix(id) & m->mask]);
}
/* Inserts id -> slot (id must be absent); returns 0 or SL_ENOMEM (map unchanged). */
int sl_idmap_put(sl_idmap *m, const sl_allocator *a, uint64_t id, uint32_t slot);
/* Replaces every value v with perm[v] (the space renumbering its slots). */
void sl_idmap_remap(sl_idmap *m, const uint32_t *perm);
/*
 * Gives back memory beyond what the entries need (the space compacting): all of it when the
 * map is empty; otherwise, when the table or the array is more than eight times the size a
 * map made afresh would have, the map is made afresh. Without memory it stays as it is.
 */
void sl_idmap_trim(sl_idmap *m, const sl_allocator *a);
/* Removes id if present. */
void sl_idmap_del(sl_idmap *m, uint64_t id);
void sl_idmap_free(sl_idmap *m, const sl_allocator *a);
size_t sl_idmap_bytes(const sl_idmap *m);
