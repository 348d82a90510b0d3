/*
 * watch.c: the etcd client's watches (see etcd.h).
 *
 * All watches share one Watch stream on the client's connection (etcd.c), opened while
 * there is a watch (again after each reconnection) and closed with the last watch stopped.
 * A response names its watch by id, which we choose (so a watch keeps its id across
 * streams). Each watch keeps its resume point, next_rev: the revision after the last one it
 * delivered, moved forward by progress notifications too. Whenever the stream is
 * (re)created, each active watch is created on it again from next_rev: events come ordered
 * and whole revisions at a time, so resuming from last + 1 neither repeats nor skips an
 * event. A watch started "from now" (0) learns its point from the created response: the
 * store's revision then, + 1.
 *
 * If etcd has compacted the history past next_rev, it cancels the watch with
 * compact_revision set. Retrying the same revision would fail forever, so the watch stops
 * (inactive) and tells its owner (on_compacted), who must read the current state (a Range)
 * and restart the watch after it (sl_etcd_watch_restart); the mirror does exactly that.
 *
 * Progress: the watches ask for etcd's periodic progress notifications (empty responses
 * with the store's revision: nothing at or below it will come later). We never send a
 * progress request: etcd 3.4 before 3.4.25 answers those with a revision that can run
 * ahead of undelivered events, and resuming from there loses events.
 *
 * Fragments: a revision too big for one response comes in several, each flagged
 * `fragment` but the last. Their events are gathered (with copies of their bytes, since each
 * message is freed after it is read) and delivered in one on_events call, so an owner never
 * sees part of a revision; a stream lost mid-revision drops the part, which comes again.
 */
#include "etcd/etcd_impl.h"

#include "base/vec.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_etcd_watch {
    sl_etcd *e;
    struct sl_etcd_watch *next;
    int64_t id;                 /* chosen by us, sent in the create request */
    char *key, *end;
    size_t klen, elen;
    int64_t next_rev;           /* resume point: last delivered revision + 1 (0: now) */
    bool active;                /* wanted on the stream (not stopped by compaction) */
    bool prev_kv;
    uint64_t fragments;
    bool sent;                  /* its id is live on the current stream (created, or canceled
                                   by etcd for compaction and not yet canceled by us) */
    sl_etcd_watch_handlers h;
    void *ud;
    /* A fragmented revision being put together. */
    sl_vec frag;                /* sl_etcd_event */
    sl_vec frag_mem;            /* uint8_t *: copies of the fragments' keys and values */
};

static void frag_clear(sl_etcd_watch *w)
{
    uint8_t **mem = w->frag_mem.p;
    for (size_t i = 0; i < w->frag_mem.n; i++)
        free(mem[i]);
    w->frag_mem.n = w->frag.n = 0;
}

/* A copy of n bytes kept until frag_clear; NULL out of memory. */
static const uint8_t *frag_copy(sl_etcd_watch *w, const uint8_t *p, size_t n)
{
    uint8_t **slot = sl_vec_push(&w->frag_mem, sizeof *slot);
    if (!slot)
        return NULL;
    uint8_t *c = malloc(n ? n : 1);
    if (!c) {
        w->frag_mem.n--;
        return NULL;
    }
    memcpy(c, p, n);
    *slot = c;
    return c;
}

static sl_etcd_watch *watch_by_id(sl_etcd *e, int64_t id)
{
    for (sl_etcd_watch *w = e->watches; w; w = w->next)
        if (w->id == id)
            return w;
    return NULL;
}

/* Fills out from ev, pointing into it (a delete's kv has the key, and its mod_revision is
 * the deletion's revision). */
static void event_of(const Mvccpb__Event *ev, sl_etcd_event *out)
{
    *out = (sl_etcd_event){.deleted = ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE,
                           .has_prev = ev->prev_kv != NULL};
    if (ev->kv)
        sl__etcd_kv_of(ev->kv, &out->kv);
    if (ev->prev_kv)
        sl__etcd_kv_of(ev->prev_kv, &out->prev);
}

/* Appends m's events to the revision being gathered, with copies of their bytes when more
 * fragments follow. false out of memory (the response is dropped). */
static bool watch_gather(sl_etcd_watch *w, const Etcdserverpb__WatchResponse *m)
{
    sl_etcd_event *out = sl_vec_extend(&w->frag, sizeof *out, m->n_events);
    if (!out)
        return false;
    for (size_t i = 0; i < m->n_events; i++) {
        event_of(m->events[i], &out[i]);
        if (m->fragment) {
            out[i].kv.key = frag_copy(w, out[i].kv.key, out[i].kv.key_len);
            out[i].kv.value = frag_copy(w, out[i].kv.value, out[i].kv.value_len);
            out[i].prev.key = frag_copy(w, out[i].prev.key, out[i].prev.key_len);
            out[i].prev.value = frag_copy(w, out[i].prev.value, out[i].prev.value_len);
        }
    }
    return true;
}

/* Delivers the gathered revision and moves the resume point past it. */
static void watch_deliver(sl_etcd_watch *w)
{
    const sl_etcd_event *ev = w->frag.p;
    size_t n = w->frag.n;
    assert(n > 0);
    int64_t last = ev[n - 1].kv.mod_revision;
    if (w->h.on_events)
        w->h.on_events(w->ud, ev, n);
    if (last + 1 > w->next_rev)
        w->next_rev = last + 1;
    frag_clear(w);
}

/* etcd canceled the watch: for compaction the owner is told; any other reason is logged. */
static void watch_canceled(sl_etcd_watch *w, const Etcdserverpb__WatchResponse *m)
{
    w->active = false;
    frag_clear(w);
    if (m->compact_revision > 0 && w->h.on_compacted)
        w->h.on_compacted(w->ud, m->compact_revision);
    else
        fprintf(stderr, "sightline: etcd watch canceled: %s\n",
                m->cancel_reason ? m->cancel_reason : "");
}

/* One WatchResponse for watch w: canceled, created, a progress notification, or events. */
static void watch_response(sl_etcd_watch *w, const Etcdserverpb__WatchResponse *m)
{
    int64_t hrev = sl__etcd_header_rev(m->header);
    if (m->canceled) {
        watch_canceled(w, m);
        return;
    }
    if (m->created && w->next_rev == 0)
        w->next_rev = hrev + 1;     /* "from now": resume after the created revision */
    if (m->created && !m->n_events)
        return;
    if (m->n_events == 0) {
        /* A progress notification: later events are all above hrev. */
        if (hrev + 1 > w->next_rev)
            w->next_rev = hrev + 1;
        if (w->h.on_progress)
            w->h.on_progress(w->ud, hrev);
        return;
    }
    if (!watch_gather(w, m))
        return;
    if (m->fragment)
        w->fragments++;
    else
        watch_deliver(w);
}

/* A response for an id we no longer have (a stopped watch, or the id a prev_kv change
 * replaced) is dropped. */
static void wstream_message(void *ud, sl_grpc_call *c, const uint8_t *msg, size_t len)
{
    (void)c;
    sl_etcd *e = ud;
    Etcdserverpb__WatchResponse *m = etcdserverpb__watch_response__unpack(NULL, len, msg);
    if (!m)
        return;
    sl_etcd_watch *w = watch_by_id(e, m->watch_id);
    if (w)
        watch_response(w, m);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* The Watch stream ended (a lost connection, etcd, or our cancel): every watch must be
 * created again on the next stream. */
static void wstream_close(void *ud, sl_grpc_call *c, const sl_grpc_status *st)
{
    (void)c;
    sl_etcd *e = ud;
    e->wstream = NULL;
    for (sl_etcd_watch *w = e->watches; w; w = w->next) {
        w->sent = false;
        frag_clear(w);      /* a partial revision is never exposed: it comes again */
    }
    if (!e->freed && st->code != SL_GRPC_CANCELLED)
        fprintf(stderr, "sightline: etcd watch stream ended: %d %s\n", st->code, st->message);
    /* The connection's return reopens it (on_state); if the connection is still up, the
     * stream alone failed: reopen now. */
    if (!e->freed && sl_etcd_connected(e) && e->watches)
        sl__etcd_watch_stream_open(e);
}

/* Sends one WatchRequest; 0, or nonzero when it did not go (too big, out of memory). */
static int wstream_send(sl_etcd *e, const Etcdserverpb__WatchRequest *req)
{
    uint8_t b[1024];
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    if (len > sizeof b)
        return SL_ELIMIT;
    protobuf_c_message_pack(&req->base, b);
    return sl_grpc_send(e->wstream, b, len, false);
}

/* Creates w on the current stream, from its resume point, with fragments and progress
 * notifications. A create that does not go out is tried again with the next stream. */
static void watch_send_create(sl_etcd *e, sl_etcd_watch *w)
{
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = sl__etcd_bytes(w->key, w->klen);
    if (w->end)
        cr.range_end = sl__etcd_bytes(w->end, w->elen);
    cr.start_revision = w->next_rev;
    cr.progress_notify = true;
    cr.fragment = true;
    cr.prev_kv = w->prev_kv;
    cr.watch_id = w->id;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    if (wstream_send(e, &req) == 0)
        w->sent = true;
}

static void watch_send_cancel(sl_etcd *e, int64_t id)
{
    Etcdserverpb__WatchCancelRequest cr = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
    cr.watch_id = id;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
    req.cancel_request = &cr;
    wstream_send(e, &req);
}

/* Opens the Watch stream (if there is none) and creates every active watch on it. */
void sl__etcd_watch_stream_open(sl_etcd *e)
{
    if (e->wstream || !e->g || e->freed)
        return;
    sl_grpc_handlers h = {wstream_message, wstream_close};
    e->wstream = sl__etcd_stream_open(e, "/etcdserverpb.Watch/Watch", &h);
    if (!e->wstream)
        return;
    for (sl_etcd_watch *w = e->watches; w; w = w->next)
        if (w->active && !w->sent)
            watch_send_create(e, w);
}

sl_etcd_watch *sl_etcd_watch_start(sl_etcd *e, const char *key, bool prefix,
                                   int64_t start_revision, const sl_etcd_watch_handlers *h,
                                   void *ud)
{
    sl_etcd_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->e = e;
    w->klen = strlen(key);
    w->key = malloc(w->klen + 1);
    w->end = prefix ? malloc(w->klen + 1) : NULL;
    if (!w->key || (prefix && !w->end)) {
        free(w->key);
        free(w->end);
        free(w);
        return NULL;
    }
    memcpy(w->key, key, w->klen + 1);
    if (prefix)
        w->elen = sl_etcd_prefix_end(key, w->klen, w->end, w->klen + 1);
    w->id = ++e->next_watch_id;
    w->next_rev = start_revision;
    w->active = true;
    w->h = *h;
    w->ud = ud;
    w->next = e->watches;
    e->watches = w;
    if (e->wstream)
        watch_send_create(e, w);
    else if (sl_etcd_connected(e))
        sl__etcd_watch_stream_open(e);
    return w;
}

/*
 * Without a stream, the create goes when the stream opens (sl__etcd_watch_stream_open).
 * The watch takes a new id: etcd keeps a watch it canceled for compaction in its stream's
 * table, and refuses a create under the same id as a duplicate (with watch id -1, which
 * names no watch of ours: the watch would stay silent for good). The old id is canceled
 * too, so that etcd forgets it.
 */
void sl_etcd_watch_restart(sl_etcd_watch *w, int64_t start_revision)
{
    if (w->e->wstream && w->sent)
        watch_send_cancel(w->e, w->id);
    w->id = ++w->e->next_watch_id;
    w->next_rev = start_revision;
    w->active = true;
    w->sent = false;
    if (w->e->wstream)
        watch_send_create(w->e, w);
}

/*
 * prev_kv is part of the create request, so a created watch is canceled and created again
 * from its resume point, under a new id: the cancel's answer, and anything else the old
 * watch still sends, names the old id and is dropped.
 */
void sl_etcd_watch_prev_kv(sl_etcd_watch *w, bool on)
{
    w->prev_kv = on;
    if (!w->e->wstream || !w->sent || !w->active)
        return;
    watch_send_cancel(w->e, w->id);
    w->id = ++w->e->next_watch_id;
    watch_send_create(w->e, w);
}

uint64_t sl_etcd_watch_fragments(const sl_etcd_watch *w)
{
    return w->fragments;
}

int64_t sl_etcd_watch_next(const sl_etcd_watch *w)
{
    return w->next_rev;
}

/* The last watch closes the stream, so that an idle client keeps no stream (and sends no
 * keepalive PINGs). */
void sl_etcd_watch_stop(sl_etcd_watch *w)
{
    sl_etcd *e = w->e;
    if (e->wstream && w->sent)
        watch_send_cancel(e, w->id);
    sl_etcd_watch **p = &e->watches;
    while (*p && *p != w)
        p = &(*p)->next;
    if (*p)
        *p = w->next;
    frag_clear(w);
    sl_vec_free(&w->frag);
    sl_vec_free(&w->frag_mem);
    free(w->key);
    free(w->end);
    free(w);
    if (!e->watches)
        sl__etcd_stream_cancel(&e->wstream);
}
