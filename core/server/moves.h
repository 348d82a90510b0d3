/*
 * moves.h: planned moves of live spaces between nodes: `sightctl space move`, `sightctl
 * drain` (README "Moving a live space"). See moves.c.
 */
#pragma once

#include "etcd/etcd.h"
#include "server/owners.h"
#include "server/server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_moves sl_moves;

/* root: the cluster's key prefix ("/sightline/NAME/v1/"); rebalance: move spaces to nodes
 * below their share by itself (--rebalance); changed(ud) when the owner tables changed and
 * placement should be reconciled soon. */
sl_moves *sl_moves_new(sl_server *srv, sl_owners *o, sl_etcd *e, const char *root,
                       const char *self, bool rebalance, void (*changed)(void *ud), void *ud);
void sl_moves_free(sl_moves *m);

/* What the mirrors of moves/ and drains/ say (keys relative to their prefixes). */
void sl_moves_intent_put(sl_moves *m, const char *space, size_t n, const uint8_t *json,
                         size_t len, int64_t mod);
void sl_moves_intent_delete(sl_moves *m, const char *space, size_t n);
void sl_moves_drain_put(sl_moves *m, const char *node, size_t n);
void sl_moves_drain_delete(sl_moves *m, const char *node, size_t n);
/* Whether node is being drained; the drained nodes (their count). */
bool sl_moves_draining(const sl_moves *m, const char *node);
size_t sl_moves_drained(const sl_moves *m, const char **nodes, size_t max);

/* Starts the next move this node owes (one at a time), or retries an unanswered commit. */
void sl_moves_step(sl_moves *m, int64_t lease, double now_ms);

/* `sightctl cluster`: the move in progress, those asked, drains, the last 16 moves (with
 * their times), a line each. */
size_t sl_moves_describe(const sl_moves *m, char *out, size_t len, double now_ms);
void sl_moves_counts(const sl_moves *m, uint64_t *moved, uint64_t *failed, bool *moving);
