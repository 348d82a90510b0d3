/*
 * mirror.h: a prefix of etcd kept in sync in memory, by list-then-watch. It lists the
 * prefix (paginated, at one pinned revision), then watches from that revision + 1, and
 * calls put / delete callbacks with key, value and mod_revision:
 *
 * - ordered and unique: across any disconnect the watch resumes from the last delivered
 *   revision + 1, and an event at or below what the mirror holds for a key is dropped
 *   (counted as a duplicate);
 * - compaction: when the resume revision was compacted, the mirror lists the prefix again
 *   and delivers exactly the difference (puts of changed keys, deletes of vanished ones, and
 *   for a key deleted and created again meanwhile, seen by its create_revision, a delete
 *   then a put), then watches on; counted as a resync;
 * - progress notifications move the resume point without events;
 * - etcd's history changed (the client saw its revision go backwards, or another cluster
 *   id; or a list found etcd behind the mirror): the mirror lists everything again and
 *   delivers the exact difference, comparing revisions for equality (a key may now have a
 *   lower mod_revision); stats.revision then follows etcd down. Counted in full_resets.
 */
#pragma once

#include "etcd/etcd.h"

typedef struct sl_etcd_mirror sl_etcd_mirror;

typedef struct sl_etcd_mirror_handlers {
    void (*on_put)(void *ud, const char *key, size_t klen, const uint8_t *value, size_t vlen,
                   int64_t mod_revision);
    /* revision: the deletion's; when a resync found the key gone, the list's; when it found
     * the key created again, its new create_revision - 1 (the deletion was at or before). */
    void (*on_delete)(void *ud, const char *key, size_t klen, int64_t revision);
    /* A full list has been applied (at start and after each resync). */
    void (*on_synced)(void *ud, int64_t revision);
} sl_etcd_mirror_handlers;

typedef struct sl_etcd_mirror_stats {
    uint64_t puts, deletes, duplicates, resyncs, lists;
    int64_t revision;           /* everything up to here is applied */
    size_t keys;
    uint64_t full_resets;       /* lists of everything after etcd's history changed (its
                                   revision went backwards, another cluster) */
    bool synced;                /* a list is done and no other is under way */
    bool watching;              /* the watch is created on the current Watch stream */
    double watch_quiet_ms;      /* since the watch last heard from etcd (-1: never) */
    int64_t head_revision;      /* the client's highest header revision seen: the lag is
                                   head_revision - revision (other prefixes count too, and
                                   without progress notifications, up to 10 minutes apart
                                   on etcd's defaults, a quiet prefix's revision stays) */
} sl_etcd_mirror_stats;

/* Starts mirroring prefix; NULL on OOM. */
sl_etcd_mirror *sl_etcd_mirror_start(sl_etcd *e, const char *prefix,
                                     const sl_etcd_mirror_handlers *h, void *ud);
void sl_etcd_mirror_stop(sl_etcd_mirror *m);
void sl_etcd_mirror_get_stats(const sl_etcd_mirror *m, sl_etcd_mirror_stats *st);
/* The health to report for a server built on this mirror: the client's (sl_etcd_health_get),
 * DEGRADED while the mirror has no list done, lists again, or has no watch established. */
void sl_etcd_mirror_health(const sl_etcd_mirror *m, sl_etcd_health *h);
