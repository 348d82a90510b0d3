/*
 * owners.h: which node serves which space (README "Running a cluster").
 *
 * The cluster's nodes register under /sightline/NAME/v1/nodes/ID (each under its lease);
 * the owner of a space is the key /sightline/NAME/v1/owners/SPACE, bound to its owner's
 * lease, created only if absent (a Txn comparing create_revision to 0), never rewritten,
 * and gone with the lease (a node's death or clean shutdown) or deleted by its owner. Its
 * revision is the ownership's **epoch**: it grows with every new owner.
 *
 * Every node sees the same nodes, definitions and owners (mirrors), and computes the same
 * placement of the unowned spaces: each goes to the live node with the smallest
 * (load + 1) / capacity, ties broken by a rendezvous hash of (space, node), in the order of
 * the spaces' hashes; so the counts end within one space of each node's weighted share. The
 * chosen node creates the owner key at once; the others, ranked by the same hash, try after
 * their rank in seconds, should the chosen one not (a node that just died). A node never
 * takes a space another node owns by itself: moving a served space is a handoff (moves.c),
 * whose Txn rewrites the owner key for the target (naming the epoch it moved from).
 */
#pragma once

#include "etcd/etcd.h"
#include "server/server.h"
#include "server/sync.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_owners sl_owners;

sl_owners *sl_owners_new(sl_server *srv, sl_sync *sync, sl_etcd *e, const char *owners_prefix,
                         const char *node_id, const char *advertise);
void sl_owners_free(sl_owners *o);

/* What the mirrors of nodes/ and owners/ say (keys relative to their prefixes). */
void sl_owners_node_put(sl_owners *o, const char *id, size_t n, const uint8_t *json,
                        size_t len);
void sl_owners_node_delete(sl_owners *o, const char *id, size_t n);
void sl_owners_owner_put(sl_owners *o, const char *space, size_t n, const uint8_t *json,
                         size_t len, int64_t revision);
void sl_owners_owner_delete(sl_owners *o, const char *space, size_t n);

/* Decides what this node serves, and takes the unowned spaces placement gives it; lease:
 * the node's lease now (0: none: it takes nothing). Cheap when nothing changed. */
void sl_owners_step(sl_owners *o, int64_t lease, double now_ms);

/* `sightctl cluster`: the nodes and the spaces' owners, a line each, into out. */
size_t sl_owners_describe(const sl_owners *o, char *out, size_t len, double now_ms);
/* The leases of the live nodes' registrations (for sl_owners_lease_ttl), and what etcd said
 * is left of one (seconds), for `sightctl cluster`. */
size_t sl_owners_node_leases(const sl_owners *o, int64_t *leases, size_t max);
void sl_owners_lease_ttl(sl_owners *o, int64_t lease, int64_t ttl_s, double now_ms);
/* For moves.c: a live node's address and lease (false: not live); a space's owner key as
 * seen (node, epoch, and from_epoch when a handoff wrote it); what a Txn of ours just wrote
 * (the mirror says the same soon); the least loaded live node (by (spaces + 1) / capacity)
 * not in except; the spaces this node hosts (their count; names valid until the next step). */
bool sl_owners_node(const sl_owners *o, const char *id, char *listen, size_t len,
                    int64_t *lease);
bool sl_owners_owner(const sl_owners *o, const char *space, char *node_id, size_t len,
                     uint64_t *epoch, uint64_t *from_epoch);
void sl_owners_note(sl_owners *o, const char *space, const char *node_id, const char *listen,
                    int64_t lease, uint64_t epoch, uint64_t from_epoch);
bool sl_owners_pick(const sl_owners *o, const char *const *except, size_t nexcept, char *id,
                    size_t len);
size_t sl_owners_mine(const sl_owners *o, const char **names, size_t max);
/* The live nodes not being drained, with their spaces and capacities (their count). */
size_t sl_owners_loads(const sl_owners *o, const char **ids, double *load, double *cap,
                       size_t max);
/* The nodes being drained: placement gives them no new space (unless all are). */
void sl_owners_set_draining(sl_owners *o, const char *const *nodes, size_t n);
/* For metrics: nodes seen, spaces owned here, spaces without an owner. */
void sl_owners_counts(const sl_owners *o, size_t *nodes, size_t *mine, size_t *unowned);
