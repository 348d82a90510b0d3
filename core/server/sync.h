/*
 * sync.h: etcd's documents applied to the server (README "The server on etcd").
 *
 * The mirror of /sightline/CLUSTER/v1/spaces/ hands every put and delete to sl_sync_put /
 * sl_sync_delete (key relative to that prefix). Changes wait in a queue merged per key (only
 * a key's last value counts; a delete followed by a put is kept as "recreated", so a space
 * deleted and defined again is dropped and built anew) and are applied by sl_sync_apply at
 * the next tick boundary, in revision order across keys. A document whose effective content
 * equals what is applied is a no-op: no events, no index rebuild, no script reload. Every
 * document is checked whole (schema.h) before anything changes; a refused one is counted
 * once per (key, revision), logged on one line, and the last good one stays applied.
 *
 * Per event the work is O(1) in the number of keys: entity documents are found by a hash of
 * (space, id), the queue by a hash of the key.
 */
#pragma once

#include "server/server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_sync sl_sync;

typedef struct sl_sync_config {
    double static_grace_ms;     /* a deleted static entity leaves after this */
    const char *script_root;    /* `scripts` of a definition is a folder below this */
    bool merge;                 /* false: apply each change at once (measurements) */
    bool hosting;               /* true: a space is created only once sl_sync_host says this
                                   node serves it (a cluster); false: every one defined */
} sl_sync_config;

typedef struct sl_sync_stats {
    uint64_t applied;           /* documents applied (puts and deletes that changed something) */
    uint64_t unchanged;         /* puts equal to what was applied: no-ops */
    uint64_t merged;            /* changes overtaken by a later one of their key in the queue */
    uint64_t refused;           /* documents (key, revision) refused, each once */
    uint64_t legacy_hash;       /* definitions accepted with the pre-1.0 schema hash basis */
    size_t queued;              /* changes waiting for the next tick */
    size_t spaces, entities;    /* definitions and entity documents held */
    int64_t revision;           /* the highest revision applied */
    char last_refusal[200];     /* one line; "" before the first */
} sl_sync_stats;

sl_sync *sl_sync_new(sl_server *srv, const sl_sync_config *cfg);
void sl_sync_free(sl_sync *s);
/* A key (below the prefix) was put or deleted at revision rev. */
void sl_sync_put(sl_sync *s, const char *key, size_t klen, const uint8_t *value, size_t vlen,
                 int64_t rev);
void sl_sync_delete(sl_sync *s, const char *key, size_t klen, int64_t rev);
/* Applies the queued changes (the server calls it at every tick boundary). */
void sl_sync_apply(sl_sync *s);
void sl_sync_get_stats(const sl_sync *s, sl_sync_stats *st);
/* With cfg.hosting: this node serves space (on: the space is created from its definition
 * and entities, now or when they come; off: dropped). 0, or SL_ENOENT when on but there is
 * no good definition yet (it comes when there is), SL_ENOMEM. */
int sl_sync_host(sl_sync *s, const char *space, bool on);
/* The spaces etcd defines with a good definition (served here or not): how many, and the
 * first max of their names (valid until the next change). */
size_t sl_sync_spaces(const sl_sync *s, const char **names, size_t max);
