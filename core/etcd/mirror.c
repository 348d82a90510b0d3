/*
 * mirror.c: a prefix of etcd kept in sync by list-then-watch (see mirror.h).
 *
 * The mirror's state is a hash map from key to mod_revision: keys only, the values go to
 * the owner's callbacks. Two things a reader must know.
 *
 * The list is consistent, and the watch starts exactly after it. The first page of a list
 * is read at the latest revision, and that revision (list_rev) is pinned for every later
 * page, so the pages together are the prefix as it was at list_rev, even while writes go
 * on. The watch then starts at list_rev + 1: every change after the list arrives as an
 * event, none twice. From there on the watch keeps its own resume point (etcd.c), and each
 * key's mod_revision in the map drops any event at or below what the mirror already
 * applied (counted as a duplicate: a guard, not a repair).
 *
 * A resync finds deletions by generations. When the watch's resume point was compacted
 * away, the events in between are gone for good, so the mirror lists the prefix again
 * under a new generation number. The list stamps every key it sees with that generation
 * and applies those that changed; a key left with an older stamp at the end was deleted
 * while the mirror could not see it, and is deleted now (list_done).
 */
#include "etcd/mirror.h"

#include "base/log.h"

#include "base/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define PAGE 1000               /* keys a list page asks for */
#define RETRY_MS 200            /* pause before a failed list starts over */

/* A bucket of the open-addressing map (linear probing, capacity a power of two). */
typedef struct entry {
    char *key;              /* NULL: empty bucket */
    size_t klen;
    uint64_t hash;
    int64_t mod;            /* the key's mod_revision, as applied */
    int64_t create;         /* its create_revision: another one is another life of the key */
    uint32_t gen;           /* the last list that saw the key (or an event that put it) */
} entry;

struct sl_etcd_mirror {
    uv_timer_t retry;           /* first: a failed list tries again after a pause */
    sl_etcd *e;
    char *prefix, *end;
    size_t plen, elen;
    sl_etcd_mirror_handlers h;
    void *ud;
    entry *map;
    size_t cap, n;              /* buckets, keys */
    uint32_t gen;               /* the current list's generation */
    int64_t list_rev;           /* the revision the current list is pinned at (0: not yet) */
    bool full;                  /* the current list is a full resync (etcd's history is not
                                   the one the mirror followed): any other mod_revision, even
                                   a lower one, is a change */
    bool stopped;
    bool listing;               /* a list is under way (at start, after compaction or reset) */
    bool inflight;              /* a page is in flight */
    bool restart;               /* ... and belongs to a list given up: start another */
    char last_error[256];       /* the last list failure logged (the same is not repeated) */
    sl_etcd_watch *watch;
    sl_etcd_mirror_stats st;
    /* What keeps the struct alive after stop: the timer handle, a list page in flight. */
    int refs;
};

static void unref(sl_etcd_mirror *m)
{
    if (--m->refs == 0)
        free(m);
}

static uint64_t hash_key(const char *k, size_t n)
{
    return sl_fnv1a64(SL_FNV1A64_BASIS, k, n);
}

/* The entry of key k (hash h), or NULL. */
static entry *find(sl_etcd_mirror *m, const char *k, size_t n, uint64_t h)
{
    if (!m->cap)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        entry *x = &m->map[i];
        if (!x->key)
            return NULL;
        if (x->hash == h && x->klen == n && !memcmp(x->key, k, n))
            return x;
    }
}

/* Doubles the map (rehashing every key) when it would become more than half full; 0 or
 * SL_ENOMEM (the map unchanged). */
static int reserve(sl_etcd_mirror *m)
{
    if ((m->n + 1) * 2 <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap * 2 : 64;
    entry *map = calloc(cap, sizeof *map);
    if (!map)
        return SL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->map[i].key)
            continue;
        size_t j = m->map[i].hash & (cap - 1);
        while (map[j].key)
            j = (j + 1) & (cap - 1);
        map[j] = m->map[i];
    }
    free(m->map);
    m->map = map;
    m->cap = cap;
    return 0;
}

/* Adds key k (hash h, not in the map) with a copy of its bytes; NULL out of memory. */
static entry *insert(sl_etcd_mirror *m, const char *k, size_t n, uint64_t h)
{
    if (reserve(m))
        return NULL;
    size_t i = h & (m->cap - 1);
    while (m->map[i].key)
        i = (i + 1) & (m->cap - 1);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, k, n);
    copy[n] = '\0';
    m->map[i] = (entry){copy, n, h, 0, 0, 0};
    m->n++;
    return &m->map[i];
}

/* Removes x, shifting the rest of its probe run back (no tombstones); its key's memory
 * goes too, unless keep (then the caller frees it). */
static void erase_ex(sl_etcd_mirror *m, entry *x, bool keep)
{
    size_t hole = (size_t)(x - m->map);
    if (!keep)
        free(x->key);
    for (size_t j = (hole + 1) & (m->cap - 1); m->map[j].key; j = (j + 1) & (m->cap - 1)) {
        size_t home = m->map[j].hash & (m->cap - 1);
        bool inside = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!inside) {
            m->map[hole] = m->map[j];
            hole = j;
        }
    }
    m->map[hole] = (entry){0};
    m->n--;
}

static void erase(sl_etcd_mirror *m, entry *x)
{
    erase_ex(m, x, false);
}

/*
 * A put from a list page or an event. One the mirror already has (same or newer
 * mod_revision) is not applied again: from a list it only renews the key's generation (the
 * key still exists), from an event it is a duplicate.
 */
static void apply_put(sl_etcd_mirror *m, const sl_etcd_kv *kv, bool listing)
{
    const char *k = (const char *)kv->key;
    uint64_t h = hash_key(k, kv->key_len);
    entry *x = find(m, k, kv->key_len, h);
    if (x && listing && x->create != kv->create_revision) {
        /* Deleted and created again while the mirror could not see: the owner hears of
         * the delete first (at a revision the deletion was at or before), then the put. */
        m->st.deletes++;
        if (m->h.on_delete)
            m->h.on_delete(m->ud, k, kv->key_len, kv->create_revision - 1);
        x->mod = 0;
    }
    bool same = m->full ? x && x->mod == kv->mod_revision : x && x->mod >= kv->mod_revision;
    if (same) {
        if (listing)
            x->gen = m->gen;
        else
            m->st.duplicates++;
        return;
    }
    if (!x && !(x = insert(m, k, kv->key_len, h)))
        return;
    x->mod = kv->mod_revision;
    x->create = kv->create_revision;
    x->gen = m->gen;
    m->st.puts++;
    if (m->h.on_put)
        m->h.on_put(m->ud, k, kv->key_len, kv->value, kv->value_len, kv->mod_revision);
}

/* A delete event: applied when the mirror holds the key at an older revision. */
static void apply_delete(sl_etcd_mirror *m, const char *k, size_t n, int64_t rev)
{
    entry *x = find(m, k, n, hash_key(k, n));
    if (!x || x->mod >= rev) {
        m->st.duplicates++;
        return;
    }
    erase(m, x);
    m->st.deletes++;
    if (m->h.on_delete)
        m->h.on_delete(m->ud, k, n, rev);
}

/* The watch's events, whole revisions in order; stats.revision follows them. */
static void on_events(void *ud, const sl_etcd_event *ev, size_t n)
{
    sl_etcd_mirror *m = ud;
    for (size_t i = 0; i < n && !m->stopped; i++) {
        if (ev[i].deleted)
            apply_delete(m, (const char *)ev[i].kv.key, ev[i].kv.key_len, ev[i].kv.mod_revision);
        else
            apply_put(m, &ev[i].kv, false);
        if (ev[i].kv.mod_revision > m->st.revision)
            m->st.revision = ev[i].kv.mod_revision;
    }
}

/* A progress notification: nothing at or below rev will come, so the mirror is at rev. */
static void on_progress(void *ud, int64_t rev)
{
    sl_etcd_mirror *m = ud;
    if (rev > m->st.revision)
        m->st.revision = rev;
}

static void list_page(sl_etcd_mirror *m, const void *from, size_t flen);
static void on_reset(void *ud, int64_t revision);

/* Gives up the list under way: the next page read starts a new list, at a new revision and
 * under a new generation (the keys already stamped by the old one count as unseen). */
static void list_reset(sl_etcd_mirror *m)
{
    m->gen++;
    m->list_rev = 0;
}

static void on_retry(uv_timer_t *t)
{
    sl_etcd_mirror *m = (sl_etcd_mirror *)t;
    if (!m->stopped)
        list_page(m, m->prefix, m->plen);
}

/*
 * The watch's resume point was compacted away: the events in between cannot be had, so
 * the mirror lists the prefix again (the watch stays stopped until list_done restarts it
 * after the new list).
 */
static void on_compacted(void *ud, int64_t compact_revision)
{
    sl_etcd_mirror *m = ud;
    sl_log("etcd mirror %s: revision %lld was compacted (now %lld): "
           "listing again", m->prefix, (long long)sl_etcd_watch_next(m->watch),
           (long long)compact_revision);
    m->st.resyncs++;
    list_reset(m);
    m->listing = true;
    list_page(m, m->prefix, m->plen);
}

/*
 * etcd's history is not the one the mirror followed (the client saw the revision go
 * backwards, or another cluster): list everything again and compare exactly, since a key's
 * mod_revision may now be lower than the one held (the duplicate guard must not drop it).
 * A list under way is given up (a page still in flight is ignored: restart).
 */
static void on_reset(void *ud, int64_t revision)
{
    sl_etcd_mirror *m = ud;
    sl_log("etcd mirror %s: etcd's history changed (revision %lld, the "
           "mirror was at %lld): listing everything again", m->prefix, (long long)revision,
           (long long)m->st.revision);
    m->st.full_resets++;
    m->full = true;
    list_reset(m);
    m->listing = true;
    uv_timer_stop(&m->retry);
    if (m->inflight)
        m->restart = true;      /* on_page starts the new list when that page is back */
    else
        list_page(m, m->prefix, m->plen);
}

/*
 * Deletes the keys the list just finished did not see: they were deleted while the mirror
 * was not watching. Their on_delete carries the list's revision (the deletion's own is not
 * known).
 */
static void sweep_unseen(sl_etcd_mirror *m)
{
    for (size_t i = 0; i < m->cap;) {
        entry *x = &m->map[i];
        if (!x->key || x->gen == m->gen) {
            i++;
            continue;
        }
        char *key = x->key;
        size_t n = x->klen;
        erase_ex(m, x, true);   /* shifts a later entry into i: look at i again */
        m->st.deletes++;
        if (m->h.on_delete)
            m->h.on_delete(m->ud, key, n, m->list_rev);
        free(key);
        if (m->stopped)
            return;
    }
}

/* The list is complete and applied: tell the owner, then watch from just after it. */
static void list_done(sl_etcd_mirror *m)
{
    sweep_unseen(m);
    if (m->stopped)
        return;
    m->st.lists++;
    if (m->list_rev > m->st.revision || m->full)
        m->st.revision = m->list_rev;
    m->full = false;
    m->listing = false;
    if (m->h.on_synced)
        m->h.on_synced(m->ud, m->list_rev);
    if (m->stopped)
        return;
    static const sl_etcd_watch_handlers wh = {on_events, on_progress, on_compacted, on_reset};
    if (!m->watch)
        m->watch = sl_etcd_watch_start(m->e, m->prefix, true, m->list_rev + 1, &wh, m);
    else
        sl_etcd_watch_restart(m->watch, m->list_rev + 1);
}

/*
 * One page of the list. The first page pins the list's revision; a page that fails
 * (etcd not reachable, or the pinned revision compacted mid-list) starts the whole list
 * over after a pause, since its pages must all be read at one revision.
 */
static void on_page(void *ud, const sl_etcd_result *r)
{
    sl_etcd_mirror *m = ud;
    m->inflight = false;
    if (m->stopped) {
        unref(m);           /* the page's reference: the last one, once the timer closed */
        return;
    }
    if (r->status.code != 0) {
        if (strcmp(m->last_error, r->status.message) != 0)
            sl_log("etcd mirror %s: list failed (%d %s); retrying",
                   m->prefix, r->status.code, r->status.message);
        snprintf(m->last_error, sizeof m->last_error, "%s", r->status.message);
        list_reset(m);
        uv_timer_start(&m->retry, on_retry, RETRY_MS, 0);
        unref(m);
        return;
    }
    m->last_error[0] = '\0';
    if (m->restart) {
        /* A reset came while this page was in flight: it belongs to a list given up. */
        m->restart = false;
        list_page(m, m->prefix, m->plen);
        unref(m);
        return;
    }
    if (!m->list_rev) {
        m->list_rev = r->revision;
        if (r->revision < m->st.revision && !m->full) {
            /* etcd is behind what the mirror applied: not the same history (the client
             * noticed too, or will): everything again, compared exactly. */
            m->full = true;
        }
    }
    /* The callbacks may stop the mirror: the page's reference keeps m until the end. */
    for (size_t i = 0; i < r->nkvs && !m->stopped; i++)
        apply_put(m, &r->kvs[i], true);
    if (m->stopped) {
        unref(m);
        return;
    }
    if (r->more && r->nkvs) {
        /* The next page starts just after the last key: the key with a 0 byte appended
         * (a copy of any length: the range call copies it again). */
        const sl_etcd_kv *last = &r->kvs[r->nkvs - 1];
        char *from = malloc(last->key_len + 1);
        if (from) {
            memcpy(from, last->key, last->key_len);
            from[last->key_len] = '\0';
            list_page(m, from, last->key_len + 1);
            free(from);
        } else {
            list_reset(m);
            uv_timer_start(&m->retry, on_retry, RETRY_MS, 0);
        }
        unref(m);
        return;
    }
    list_done(m);
    unref(m);
}

/* Asks for the page of up to PAGE keys from `from` to the prefix's end, at the list's
 * pinned revision (0 for the first page: the latest). A page in flight holds a reference. */
static void list_page(sl_etcd_mirror *m, const void *from, size_t flen)
{
    if (sl_etcd_range_ex(m->e, from, flen, m->end, m->elen, m->list_rev, PAGE, on_page, m)) {
        sl_log("etcd mirror %s: out of memory listing", m->prefix);
        uv_timer_start(&m->retry, on_retry, RETRY_MS, 0);
        return;
    }
    m->refs++;
    m->inflight = true;
}

sl_etcd_mirror *sl_etcd_mirror_start(sl_etcd *e, const char *prefix,
                                     const sl_etcd_mirror_handlers *h, void *ud)
{
    sl_etcd_mirror *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->e = e;
    m->plen = strlen(prefix);
    m->prefix = malloc(m->plen + 1);
    m->end = malloc(m->plen + 1);
    if (!m->prefix || !m->end) {
        free(m->prefix);
        free(m->end);
        free(m);
        return NULL;
    }
    memcpy(m->prefix, prefix, m->plen + 1);
    m->elen = sl_etcd_prefix_end(prefix, m->plen, m->end, m->plen + 1);
    m->h = *h;
    m->ud = ud;
    m->gen = 1;
    m->listing = true;
    uv_timer_init(sl_etcd_loop(e), &m->retry);
    m->refs = 1;
    list_page(m, m->prefix, m->plen);
    return m;
}

static void timer_closed(uv_handle_t *h)
{
    unref((sl_etcd_mirror *)h);
}

/* Frees the keys and the map; the mirror is then empty. */
static void map_free(sl_etcd_mirror *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->map[i].key);
    free(m->map);
    m->map = NULL;
    m->cap = m->n = 0;
}

/* Everything but the struct goes now; the struct goes when the timer has closed and no
 * page is in flight (on_page then drops the last reference). */
void sl_etcd_mirror_stop(sl_etcd_mirror *m)
{
    if (!m)
        return;
    m->stopped = true;
    if (m->watch)
        sl_etcd_watch_stop(m->watch);
    map_free(m);
    free(m->prefix);
    free(m->end);
    m->prefix = m->end = NULL;
    uv_close((uv_handle_t *)&m->retry, timer_closed);
}

void sl_etcd_mirror_get_stats(const sl_etcd_mirror *m, sl_etcd_mirror_stats *st)
{
    *st = m->st;
    st->keys = m->n;
    st->synced = m->st.lists > 0 && !m->listing;
    st->watching = m->watch && sl_etcd_watch_live(m->watch);
    st->watch_quiet_ms = m->watch ? sl_etcd_watch_quiet_ms(m->watch) : -1;
    sl_etcd_health h;
    sl_etcd_health_get(m->e, &h);
    st->head_revision = h.head_revision;
}

/*
 * The client's state, lowered by what the mirror lacks: a CONNECTED client with a mirror
 * that has never completed a list, is listing again, or whose watch is not created on the
 * current stream is DEGRADED (the server serves what it had).
 */
void sl_etcd_mirror_health(const sl_etcd_mirror *m, sl_etcd_health *h)
{
    sl_etcd_health_get(m->e, h);
    if (h->state != SL_ETCD_CONNECTED)
        return;
    sl_etcd_mirror_stats st;
    sl_etcd_mirror_get_stats(m, &st);
    const char *why = NULL;
    if (!st.lists)
        why = "the first list is not done";
    else if (!st.synced)
        why = "listing again";
    else if (!st.watching)
        why = "the watch is not established";
    if (!why)
        return;
    h->state = SL_ETCD_DEGRADED;
    snprintf(h->reason, sizeof h->reason, "%.80s: mirror %.40s: %s", h->endpoint, m->prefix,
             why);
}
