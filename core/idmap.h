/*
 * idmap.h: the map from a game's uint64 entity id to the space's dense uint32 slot. Any
 * uint64 is a valid key (0 and 2^64-1 included). Open addressing with linear probing and
 * backward-shift deletion, so lookups never wade through tombstones.
 */
#pragma once

#include "common.h"

/* One bucket: key and value side by side, so that a lookup costs one cache line. */
typedef struct sl__idslot {
    uint64_t key;
    uint32_t val;           /* UINT32_MAX marks an empty bucket */
    uint32_t unused;
} sl__idslot;

typedef struct sl__idmap {
    sl__idslot *slots;
    uint32_t mask;          /* capacity - 1 (capacity is a power of two), or 0 when empty */
    uint32_t n;
} sl__idmap;

/* A 64-bit finaliser (from splitmix64): sequential ids spread over the whole table. */
static inline uint64_t sl__idmap_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Returns the slot of id, or UINT32_MAX when absent. */
uint32_t sl__idmap_get(const sl__idmap *m, uint64_t id);
/* Starts loading the bucket where a lookup of id begins (a hint; never faults). */
static inline void sl__idmap_prefetch(const sl__idmap *m, uint64_t id)
{
    if (m->n)
        __builtin_prefetch(&m->slots[(uint32_t)sl__idmap_mix(id) & m->mask]);
}
/* Inserts id -> slot (id must be absent); returns 0 or SL_ENOMEM (map unchanged). */
int sl__idmap_put(sl__idmap *m, const sl_allocator *a, uint64_t id, uint32_t slot);
/* Replaces every value v with perm[v] (the space renumbering its slots). */
void sl__idmap_remap(sl__idmap *m, const uint32_t *perm);
/* Removes id if present. */
void sl__idmap_del(sl__idmap *m, uint64_t id);
void sl__idmap_free(sl__idmap *m, const sl_allocator *a);
size_t sl__idmap_bytes(const sl__idmap *m);
