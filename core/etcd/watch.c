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
 * The stream and the client's health. Every stream carries `hasleader`: a member without
 * a leader refuses it, or ends it when it loses its leader, with "no leader"; that is an
 * endpoint failure (etcd.c moves to the next endpoint with backoff), never a reason to
 * reopen at once (which, against such a member, made thousands of streams and log lines a
 * second). A stream that fails otherwise on a good connection is reopened after a backoff
 * of its own. A new connection is probed with a watch of our own (PROBE_ID) created and
 * canceled at once; and every probe interval a progress request goes out, whose answer
 * (watch id -1) proves the stream alive and moves no resume point.
 *
 * A watch may be stopped from inside its own callbacks: the stop unlinks it at once and
 * its memory goes when the callback returns (in_cb, stopped).
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

#define PROBE_ID (INT64_C(1) << 62)     /* the probe watch's id: far above ours */
#define WRETRY_MIN_MS 100
#define WRETRY_MAX_MS 5000

static void watch_free(sl_etcd_watch *w);
static void watch_send_cancel(sl_etcd *e, int64_t id);
static void probe_answered(sl_etcd *e, const Etcdserverpb__WatchResponse *m);

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
    bool live;                  /* etcd created it on the current stream */
    int denied;                 /* creates refused with "permission denied" in a row */
    uint64_t heard;             /* loop time of its last response (created, events,
                                   progress) */
    int in_cb;                  /* inside one of its callbacks: a stop waits for the return */
    bool stopped;               /* stopped from inside a callback: free it on return */
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
    if (last + 1 > w->next_rev)
        w->next_rev = last + 1;
    if (w->h.on_events) {
        w->in_cb++;
        w->h.on_events(w->ud, ev, n);
        w->in_cb--;
    }
    frag_clear(w);
}

/* etcd canceled the watch: for compaction the owner is told; any other reason is logged. */
static void watch_canceled(sl_etcd_watch *w, const Etcdserverpb__WatchResponse *m)
{
    if (!w->active)
        return;             /* the answer to our own cancel (a reset stopped the watch) */
    w->active = false;
    w->live = false;
    frag_clear(w);
    if (w->e->user && m->cancel_reason && strstr(m->cancel_reason, "permission denied") &&
        w->denied++ < 2) {
        /* etcd checks the stream's token when a watch is created: an expired one says
         * "permission denied". A new token, on a new stream, creates it again (twice at
         * most: a user really without the permission is told in the log). */
        w->active = true;
        w->sent = false;
        sl__etcd_stream_cancel(&w->e->wstream);
        sl__etcd_auth_refused(w->e);
        return;
    }
    if (m->compact_revision > 0 && w->h.on_compacted) {
        w->in_cb++;
        w->h.on_compacted(w->ud, m->compact_revision);
        w->in_cb--;
    } else {
        sl__etcd_log(w->e, "watch canceled: %s", m->cancel_reason ? m->cancel_reason : "");
    }
}

/* One WatchResponse for watch w: canceled, created, a progress notification, or events. */
static void watch_response(sl_etcd_watch *w, const Etcdserverpb__WatchResponse *m)
{
    int64_t hrev = sl__etcd_header_rev(m->header);
    if (m->canceled) {
        watch_canceled(w, m);
        return;
    }
    w->heard = uv_now(w->e->loop);
    if (m->created && !m->canceled)
        w->denied = 0;
    if (m->created) {
        w->live = true;
        if (w->next_rev == 0)
            w->next_rev = hrev + 1;     /* "from now": resume after the created revision */
    }
    if (m->created && !m->n_events)
        return;
    if (m->n_events == 0) {
        /* A progress notification: later events are all above hrev. */
        if (hrev + 1 > w->next_rev)
            w->next_rev = hrev + 1;
        if (w->h.on_progress) {
            w->in_cb++;
            w->h.on_progress(w->ud, hrev);
            w->in_cb--;
        }
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
    sl__etcd_ok(e);
    e->wbackoff = 0;
    sl__etcd_header(e, m->header, NULL);
    sl_etcd_watch *w = watch_by_id(e, m->watch_id);
    if (m->watch_id == PROBE_ID) {
        probe_answered(e, m);
    } else if (m->watch_id == -1 && m->created && e->user && m->cancel_reason &&
               strstr(m->cancel_reason, "invalid auth token")) {
        /* A create on a stream whose token expired: a new token, a new stream, and every
         * watch created again on it (sl__etcd_became_ready). */
        sl__etcd_stream_cancel(&e->wstream);
        sl__etcd_auth_refused(e);
    } else if (m->watch_id == -1 && m->created) {
        sl__etcd_log(e, "%s refused a watch: %s", e->endpoint,
                     m->cancel_reason ? m->cancel_reason : "");
    } else if (m->watch_id == -1) {
        e->wprogress_sent = 0;      /* the answer to our progress request */
    } else if (w) {
        watch_response(w, m);
        if (w->stopped && !w->in_cb)
            watch_free(w);
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* The Watch stream ended (a lost connection, etcd, or our cancel): every watch must be
 * created again on the next stream. */
static void wretry_fire(uv_timer_t *t)
{
    sl_etcd *e = t->data;
    if (!e->freed && sl_etcd_connected(e) && e->watches && !e->wstream) {
        e->watch_reopens++;
        sl__etcd_watch_stream_open(e);
    }
}

static void wstream_close(void *ud, sl_grpc_call *c, const sl_grpc_status *st)
{
    sl_etcd *e = ud;
    if (e->wstream && c != e->wstream)
        return;             /* an older stream, replaced since */
    e->wstream = NULL;
    e->wprobe = false;
    e->wprogress_sent = 0;
    for (sl_etcd_watch *w = e->watches; w; w = w->next) {
        w->sent = false;
        w->live = false;
        frag_clear(w);      /* a partial revision is never exposed: it comes again */
    }
    if (e->freed || st->code == SL_GRPC_CANCELLED)
        return;
    if (sl__etcd_no_leader(st)) {
        sl__etcd_endpoint_failed(e, "no leader");
        return;
    }
    if (e->user && sl__etcd_auth_error(st)) {
        sl__etcd_auth_refused(e);   /* the new token reopens the stream */
        return;
    }
    /* The connection's return reopens it (on_state); if the connection is still up, the
     * stream alone failed: reopen it after a backoff. */
    if (!sl_etcd_connected(e))
        return;
    sl__etcd_log(e, "%s: watch stream ended: %d %s", e->endpoint, st->code, st->message);
    e->wbackoff = e->wbackoff ? e->wbackoff * 2 : WRETRY_MIN_MS;
    if (e->wbackoff > WRETRY_MAX_MS)
        e->wbackoff = WRETRY_MAX_MS;
    uv_timer_start(&e->wretry, wretry_fire, (uint64_t)e->wbackoff, 0);
}

/* Sends one WatchRequest; 0, or nonzero when it did not go (too big, out of memory). */
static int wstream_send(sl_etcd *e, const Etcdserverpb__WatchRequest *req)
{
    uint8_t buf[1024];
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    uint8_t *b = len <= sizeof buf ? buf : malloc(len);
    if (!b)
        return SL_ENOMEM;
    protobuf_c_message_pack(&req->base, b);
    int rc = sl_grpc_send(e->wstream, b, len, false);
    if (b != buf)
        free(b);
    return rc;
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

/* A watch of one key of our own, from now: a member with a leader creates it at once. */
void sl__etcd_watch_probe(sl_etcd *e)
{
    sl__etcd_watch_stream_open(e);
    if (!e->wstream || e->wprobe)
        return;
    static const char key[] = "\0sightline-probe";
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = sl__etcd_bytes(key, sizeof key - 1);
    cr.watch_id = PROBE_ID;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    if (wstream_send(e, &req) == 0)
        e->wprobe = true;
}

/* The probe watch was created (the member has a leader): cancel it, and close the stream
 * if no watch of the owner's needs it. */
static void probe_answered(sl_etcd *e, const Etcdserverpb__WatchResponse *m)
{
    if (!m->created || !e->wprobe)
        return;
    e->wprobe = false;
    watch_send_cancel(e, PROBE_ID);
    if (!e->watches)
        sl__etcd_stream_cancel(&e->wstream);
}

bool sl__etcd_watch_ask_progress(sl_etcd *e)
{
    if (!e->wstream || !e->watches)
        return false;
    Etcdserverpb__WatchProgressRequest pr = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    req.progress_request = &pr;
    return wstream_send(e, &req) == 0;
}

void sl__etcd_watch_conn_lost(sl_etcd *e)
{
    uv_timer_stop(&e->wretry);
    e->wprobe = false;
    e->wprogress_sent = 0;
}

/*
 * Every watch stops (canceled on etcd's side too) and its owner is told; a watch stopped
 * from that callback is freed on its return. The list is walked again from the start after
 * each callback, since an owner may stop or start watches from it.
 */
void sl__etcd_watch_reset_all(sl_etcd *e, int64_t revision)
{
    for (;;) {
        sl_etcd_watch *w = e->watches;
        while (w && !w->active)
            w = w->next;
        if (!w)
            return;
        if (e->wstream && w->sent)
            watch_send_cancel(e, w->id);
        w->sent = w->live = false;
        w->active = false;
        frag_clear(w);
        w->in_cb++;
        if (w->h.on_reset)
            w->h.on_reset(w->ud, revision);
        else if (w->h.on_compacted)
            w->h.on_compacted(w->ud, 0);
        w->in_cb--;
        if (w->stopped && !w->in_cb)
            watch_free(w);
    }
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

bool sl_etcd_watch_live(const sl_etcd_watch *w)
{
    return w->live;
}

double sl_etcd_watch_quiet_ms(const sl_etcd_watch *w)
{
    return w->heard ? (double)(uv_now(w->e->loop) - w->heard) : -1;
}

int64_t sl_etcd_watch_next(const sl_etcd_watch *w)
{
    return w->next_rev;
}

/* The last watch closes the stream, so that an idle client keeps no stream (and sends no
 * keepalive PINGs). */
void sl_etcd_watch_stop(sl_etcd_watch *w)
{
    if (w->stopped)
        return;
    sl_etcd *e = w->e;
    if (e->wstream && w->sent)
        watch_send_cancel(e, w->id);
    sl_etcd_watch **p = &e->watches;
    while (*p && *p != w)
        p = &(*p)->next;
    if (*p)
        *p = w->next;
    w->stopped = true;
    w->active = false;
    if (!e->watches && !e->wprobe)
        sl__etcd_stream_cancel(&e->wstream);
    if (!w->in_cb)
        watch_free(w);
}

/* The memory of a stopped watch (already unlinked). */
static void watch_free(sl_etcd_watch *w)
{
    frag_clear(w);
    sl_vec_free(&w->frag);
    sl_vec_free(&w->frag_mem);
    free(w->key);
    free(w->end);
    free(w);
}
