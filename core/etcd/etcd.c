/*
 * etcd.c: see etcd.h. Each call packs its request with protobuf-c, runs one gRPC unary
 * call, unpacks the response and hands the caller a flat sl_etcd_result.
 */
#include "etcd/etcd.h"

#include "kv.pb-c.h"
#include "rpc.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENDPOINTS 16

typedef enum { OP_RANGE, OP_PUT, OP_DELETE, OP_TXN, OP_GRANT, OP_REVOKE } op_kind;

typedef struct op {
    sl_etcd *e;
    op_kind kind;
    sl_etcd_cb cb;
    void *ud;
    uint8_t *resp;
    size_t resp_len;
    bool got;
    uv_timer_t fail_timer;      /* for a call that fails before it starts */
    sl_grpc_status early;
} op;

struct sl_etcd {
    uv_loop_t *loop;
    sl_etcd_config cfg;
    char hosts[MAX_ENDPOINTS][80];
    int ports[MAX_ENDPOINTS];
    int nendpoints, current;
    char endpoint[96];
    sl_grpc *g;
    uv_timer_t retry;
    double backoff;
    uint64_t connects, rng;
    bool freed;
    /* Watches: one stream for all of them. */
    struct sl_etcd_watch *watches;
    sl_grpc_call *wstream;
    int64_t next_watch_id;
    /* Leases kept alive: one stream for all of them. */
    struct sl_etcd_lease *leases;
    sl_grpc_call *kstream;
};

struct sl_etcd_lease {
    uv_timer_t timer;           /* first: ticks every TTL/3; freed in its close callback */
    sl_etcd *e;
    struct sl_etcd_lease *next;
    int64_t ttl, id;
    uint64_t last_ok;           /* loop time of the last good keepalive (or the grant) */
    bool granting, released;
    uint64_t losses;
    int refs;                   /* the timer handle, and a grant in flight */
    sl_etcd_lease_fn fn;
    void *ud;
};

struct sl_etcd_watch {
    sl_etcd *e;
    struct sl_etcd_watch *next;
    int64_t id;
    char *key, *end;
    size_t klen, elen;
    int64_t next_rev;           /* resume point: last delivered revision + 1 (0: now) */
    bool active;                /* wanted on the stream (not stopped by compaction) */
    bool prev_kv;
    uint64_t fragments;
    bool sent;                  /* its create request went out on the current stream */
    sl_etcd_watch_handlers h;
    void *ud;
    /* A fragmented revision being put together. */
    sl_etcd_event *frag;
    size_t nfrag, capfrag;
    uint8_t **frag_mem;         /* copies of the fragments' keys and values */
    size_t nmem, capmem;
};

static void watch_stream_open(sl_etcd *e);
static void watches_send(sl_etcd *e);

static const char *const paths[] = {
    "/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn", "/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke",
};

/* ---- connection ---------------------------------------------------------------------------- */

static void connect_next(sl_etcd *e);

static void on_retry(uv_timer_t *t)
{
    connect_next(t->data);
}

static void on_state(void *ud, sl_grpc *g, bool up, const char *why)
{
    sl_etcd *e = ud;
    if (up) {
        e->backoff = 0;
        e->connects++;
        if (e->watches)
            watch_stream_open(e);
        return;
    }
    fprintf(stderr, "sightline: etcd %s: %s\n", e->endpoint, why);
    if (e->g == g) {
        sl_grpc_free(g);
        e->g = NULL;
    }
    if (e->freed)
        return;
    /* Capped exponential backoff with +-20 % jitter, then the next endpoint. */
    e->backoff = e->backoff ? e->backoff * 2 : e->cfg.backoff_min_ms;
    if (e->backoff > e->cfg.backoff_max_ms)
        e->backoff = e->cfg.backoff_max_ms;
    e->rng = e->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    double jitter = 0.8 + 0.4 * (double)(e->rng >> 11) / (double)(1ULL << 53);
    e->current = (e->current + 1) % e->nendpoints;
    uv_timer_start(&e->retry, on_retry, (uint64_t)(e->backoff * jitter), 0);
}

static void connect_next(sl_etcd *e)
{
    if (e->g || e->freed)
        return;
    sl_grpc_config gc = {.host = e->hosts[e->current], .port = e->ports[e->current],
                         .max_message = e->cfg.max_message,
                         .ping_interval_ms = e->cfg.ping_interval_ms,
                         .ping_timeout_ms = e->cfg.ping_timeout_ms};
    snprintf(e->endpoint, sizeof e->endpoint, "%s:%d", gc.host, gc.port);
    e->g = sl_grpc_connect(e->loop, &gc, on_state, e);
}

int sl_etcd_new(sl_etcd **out, uv_loop_t *loop, const sl_etcd_config *cfg, char *err,
                size_t errlen)
{
    sl_etcd *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->loop = loop;
    e->cfg = *cfg;
    if (!(e->cfg.timeout_ms > 0))
        e->cfg.timeout_ms = 5000;
    if (!(e->cfg.backoff_min_ms > 0))
        e->cfg.backoff_min_ms = 50;
    if (!(e->cfg.backoff_max_ms > 0))
        e->cfg.backoff_max_ms = 2000;
    e->rng = (uint64_t)(uintptr_t)e ^ uv_hrtime();
    const char *p = cfg->endpoints ? cfg->endpoints : "";
    while (*p && e->nendpoints < MAX_ENDPOINTS) {
        size_t n = strcspn(p, ",");
        char one[80];
        snprintf(one, sizeof one, "%.*s", (int)(n < 79 ? n : 79), p);
        char *colon = strrchr(one, ':');
        if (!colon || colon == one) {
            snprintf(err, errlen, "endpoint '%s' is not host:port", one);
            free(e);
            return -1;
        }
        *colon = '\0';
        snprintf(e->hosts[e->nendpoints], sizeof e->hosts[0], "%s", one);
        e->ports[e->nendpoints++] = atoi(colon + 1);
        p += n + (p[n] == ',');
    }
    if (!e->nendpoints) {
        snprintf(err, errlen, "no etcd endpoint given");
        free(e);
        return -1;
    }
    uv_timer_init(loop, &e->retry);
    e->retry.data = e;
    connect_next(e);
    *out = e;
    return 0;
}

static void etcd_closed(uv_handle_t *h)
{
    free(h->data);
}

void sl_etcd_free(sl_etcd *e)
{
    if (!e)
        return;
    e->freed = true;
    while (e->watches)
        sl_etcd_watch_stop(e->watches);
    while (e->leases)
        sl_etcd_lease_release(e->leases, false);
    if (e->g) {
        sl_grpc *g = e->g;
        e->g = NULL;
        sl_grpc_free(g);    /* ends every call in flight with CANCELLED */
    }
    uv_close((uv_handle_t *)&e->retry, etcd_closed);
}

uv_loop_t *sl_etcd_loop(const sl_etcd *e)
{
    return e->loop;
}

bool sl_etcd_connected(const sl_etcd *e)
{
    return e->g && sl_grpc_is_up(e->g);
}

const char *sl_etcd_endpoint(const sl_etcd *e)
{
    return e->endpoint;
}

uint64_t sl_etcd_connects(const sl_etcd *e)
{
    return e->connects;
}

/* ---- calls --------------------------------------------------------------------------------- */

static void kv_of(const Mvccpb__KeyValue *k, sl_etcd_kv *out)
{
    *out = (sl_etcd_kv){
        .key = k->key.data, .key_len = k->key.len, .value = k->value.data,
        .value_len = k->value.len, .create_revision = k->create_revision,
        .mod_revision = k->mod_revision, .version = k->version, .lease = k->lease,
    };
}

static int64_t header_rev(const Etcdserverpb__ResponseHeader *h)
{
    return h ? h->revision : 0;
}

/* Flattens n protobuf key-values into a new array for r (freed by the caller). */
static sl_etcd_kv *kvs_of(Mvccpb__KeyValue **kvs, size_t n, sl_etcd_result *r)
{
    sl_etcd_kv *many = calloc(n ? n : 1, sizeof *many);
    for (size_t i = 0; many && i < n; i++)
        kv_of(kvs[i], &many[i]);
    r->kvs = many;
    r->nkvs = many ? n : 0;
    return many;
}

/* Unpacks the response of op o into r and calls back. */
static void deliver(op *o, const sl_grpc_status *st)
{
    sl_etcd_result r = {.status = *st};
    sl_etcd_kv one, *many = NULL;
    const uint8_t *p = o->resp;
    size_t n = o->resp_len;
    void *msg = NULL;
    if (st->code == 0 && !o->got) {
        r.status.code = SL_GRPC_INTERNAL;
        snprintf(r.status.message, sizeof r.status.message, "no response message");
    } else if (st->code == 0) {
        switch (o->kind) {
        case OP_RANGE: {
            Etcdserverpb__RangeResponse *m = etcdserverpb__range_response__unpack(NULL, n, p);
            if ((msg = m)) {
                r.revision = header_rev(m->header);
                r.more = m->more;
                r.count = m->count;
                many = kvs_of(m->kvs, m->n_kvs, &r);
            }
            break;
        }
        case OP_PUT: {
            Etcdserverpb__PutResponse *m = etcdserverpb__put_response__unpack(NULL, n, p);
            if ((msg = m)) {
                r.revision = header_rev(m->header);
                if (m->prev_kv) {
                    kv_of(m->prev_kv, &one);
                    r.kvs = &one;
                    r.nkvs = 1;
                }
            }
            break;
        }
        case OP_DELETE: {
            Etcdserverpb__DeleteRangeResponse *m =
                etcdserverpb__delete_range_response__unpack(NULL, n, p);
            if ((msg = m)) {
                r.revision = header_rev(m->header);
                r.deleted = m->deleted;
                many = kvs_of(m->prev_kvs, m->n_prev_kvs, &r);
            }
            break;
        }
        case OP_TXN: {
            Etcdserverpb__TxnResponse *m = etcdserverpb__txn_response__unpack(NULL, n, p);
            if ((msg = m)) {
                r.revision = header_rev(m->header);
                r.succeeded = m->succeeded;
                /* The kvs of the branch's Range ops, in order; the deletes' counts. */
                size_t total = 0;
                /* response_* share a union: look at response_case, not at the pointers. */
                for (size_t i = 0; i < m->n_responses; i++)
                    if (m->responses[i]->response_case ==
                        ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
                        total += m->responses[i]->response_range->n_kvs;
                many = calloc(total ? total : 1, sizeof *many);
                for (size_t i = 0; many && i < m->n_responses; i++) {
                    const Etcdserverpb__ResponseOp *ro = m->responses[i];
                    if (ro->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
                        for (size_t k = 0; k < ro->response_range->n_kvs; k++)
                            kv_of(ro->response_range->kvs[k], &many[r.nkvs++]);
                    else if (ro->response_case ==
                             ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE)
                        r.deleted += ro->response_delete_range->deleted;
                }
                r.kvs = many;
            }
            break;
        }
        case OP_GRANT: {
            Etcdserverpb__LeaseGrantResponse *m =
                etcdserverpb__lease_grant_response__unpack(NULL, n, p);
            if ((msg = m)) {
                r.revision = header_rev(m->header);
                r.lease_id = m->id;
                r.ttl = m->ttl;
                if (m->error && m->error[0]) {
                    r.status.code = SL_GRPC_UNKNOWN;
                    snprintf(r.status.message, sizeof r.status.message, "%s", m->error);
                }
            }
            break;
        }
        case OP_REVOKE: {
            Etcdserverpb__LeaseRevokeResponse *m =
                etcdserverpb__lease_revoke_response__unpack(NULL, n, p);
            if ((msg = m))
                r.revision = header_rev(m->header);
            break;
        }
        }
        if (!msg) {
            r.status.code = SL_GRPC_INTERNAL;
            snprintf(r.status.message, sizeof r.status.message, "malformed response");
        }
    }
    if (o->cb)
        o->cb(o->ud, &r);
    free(many);
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void op_on_message(void *ud, sl_grpc_call *c, const uint8_t *msg, size_t len)
{
    (void)c;
    op *o = ud;
    if (o->got)
        return;     /* unary: one response */
    o->resp = malloc(len ? len : 1);
    if (o->resp)
        memcpy(o->resp, msg, len);
    o->resp_len = len;
    o->got = o->resp != NULL;
}

static void op_free(uv_handle_t *h)
{
    op *o = h->data;
    free(o->resp);
    free(o);
}

static void op_on_close(void *ud, sl_grpc_call *c, const sl_grpc_status *st)
{
    (void)c;
    op *o = ud;
    deliver(o, st);
    uv_close((uv_handle_t *)&o->fail_timer, op_free);
}

static void op_fail_now(uv_timer_t *t)
{
    op *o = t->data;
    deliver(o, &o->early);
    uv_close((uv_handle_t *)&o->fail_timer, op_free);
}

/* Starts op o with the packed request (len bytes); failures are reported through cb. */
static int run(sl_etcd *e, op_kind kind, const ProtobufCMessage *req, sl_etcd_cb cb, void *ud)
{
    op *o = calloc(1, sizeof *o);
    if (!o)
        return -1;
    o->e = e;
    o->kind = kind;
    o->cb = cb;
    o->ud = ud;
    uv_timer_init(e->loop, &o->fail_timer);
    o->fail_timer.data = o;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t stackbuf[4096], *b = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!b) {
        uv_close((uv_handle_t *)&o->fail_timer, op_free);
        return -1;
    }
    protobuf_c_message_pack(req, b);
    sl_grpc_handlers h = {op_on_message, op_on_close};
    sl_grpc_call *c = e->g ? sl_grpc_start(e->g, paths[kind], e->cfg.timeout_ms, &h, o, NULL)
                           : NULL;
    if (c && sl_grpc_send(c, b, len, true) == 0) {
        if (b != stackbuf)
            free(b);
        return 0;
    }
    if (c)
        sl_grpc_cancel(c);      /* on_close has reported it */
    else {
        /* Not connected: say so from the loop, never from inside this call. */
        o->early.code = SL_GRPC_UNAVAILABLE;
        snprintf(o->early.message, sizeof o->early.message,
                 "not connected to etcd (reconnecting to %s)", e->endpoint);
        uv_timer_start(&o->fail_timer, op_fail_now, 0, 0);
    }
    if (b != stackbuf)
        free(b);
    return 0;
}

size_t sl_etcd_prefix_end(const char *prefix, size_t plen, char *out, size_t len)
{
    size_t n = plen < len ? plen : len;
    memcpy(out, prefix, n);
    while (n > 0) {
        if ((unsigned char)out[n - 1] < 0xff) {
            out[n - 1]++;
            return n;
        }
        n--;
    }
    out[0] = '\0';      /* every key: range_end "\0" */
    return 1;
}

static ProtobufCBinaryData bytes_of(const void *p, size_t n)
{
    return (ProtobufCBinaryData){n, (uint8_t *)p};
}

int sl_etcd_range(sl_etcd *e, const char *key, bool prefix, int64_t revision, int64_t limit,
                  sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    char end[512];
    size_t klen = strlen(key);
    req.key = bytes_of(key, klen);
    if (prefix)
        req.range_end = bytes_of(end, sl_etcd_prefix_end(key, klen, end, sizeof end));
    req.revision = revision;
    req.limit = limit;
    return run(e, OP_RANGE, &req.base, cb, ud);
}

int sl_etcd_range_ex(sl_etcd *e, const void *key, size_t klen, const void *end, size_t elen,
                     int64_t revision, int64_t limit, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = bytes_of(key, klen);
    if (end)
        req.range_end = bytes_of(end, elen);
    req.revision = revision;
    req.limit = limit;
    return run(e, OP_RANGE, &req.base, cb, ud);
}

int sl_etcd_put(sl_etcd *e, const char *key, const void *value, size_t len, int64_t lease,
                bool prev_kv, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = bytes_of(key, strlen(key));
    req.value = bytes_of(value, len);
    req.lease = lease;
    req.prev_kv = prev_kv;
    return run(e, OP_PUT, &req.base, cb, ud);
}

int sl_etcd_delete(sl_etcd *e, const char *key, bool prefix, bool prev_kv, sl_etcd_cb cb,
                   void *ud)
{
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    char end[512];
    size_t klen = strlen(key);
    req.key = bytes_of(key, klen);
    if (prefix)
        req.range_end = bytes_of(end, sl_etcd_prefix_end(key, klen, end, sizeof end));
    req.prev_kv = prev_kv;
    return run(e, OP_DELETE, &req.base, cb, ud);
}

/* The protobuf-c messages of one branch of a txn, in caller storage. */
typedef struct txn_branch {
    Etcdserverpb__RequestOp op[SL_ETCD_TXN_MAX], *ops[SL_ETCD_TXN_MAX];
    Etcdserverpb__RangeRequest range[SL_ETCD_TXN_MAX];
    Etcdserverpb__PutRequest put[SL_ETCD_TXN_MAX];
    Etcdserverpb__DeleteRangeRequest del[SL_ETCD_TXN_MAX];
    char end[SL_ETCD_TXN_MAX][256];
} txn_branch;

static void txn_ops(txn_branch *b, const sl_etcd_txn_op *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t klen = strlen(in[i].key);
        ProtobufCBinaryData key = bytes_of(in[i].key, klen), end = {0, NULL};
        if (in[i].prefix)
            end = bytes_of(b->end[i], sl_etcd_prefix_end(in[i].key, klen, b->end[i], 256));
        b->op[i] = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
        b->ops[i] = &b->op[i];
        switch (in[i].kind) {
        case SL_TXN_RANGE:
            b->range[i] = (Etcdserverpb__RangeRequest)ETCDSERVERPB__RANGE_REQUEST__INIT;
            b->range[i].key = key;
            b->range[i].range_end = end;
            b->op[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
            b->op[i].request_range = &b->range[i];
            break;
        case SL_TXN_PUT:
            b->put[i] = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
            b->put[i].key = key;
            b->put[i].value = bytes_of(in[i].value, in[i].value_len);
            b->put[i].lease = in[i].lease;
            b->op[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            b->op[i].request_put = &b->put[i];
            break;
        case SL_TXN_DELETE:
            b->del[i] = (Etcdserverpb__DeleteRangeRequest)ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
            b->del[i].key = key;
            b->del[i].range_end = end;
            b->op[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
            b->op[i].request_delete_range = &b->del[i];
            break;
        }
    }
}

int sl_etcd_txn(sl_etcd *e, const sl_etcd_cmp *cmps, size_t ncmp, const sl_etcd_txn_op *ok,
                size_t nok, const sl_etcd_txn_op *fail, size_t nfail, sl_etcd_cb cb, void *ud)
{
    if (ncmp > SL_ETCD_TXN_MAX || nok > SL_ETCD_TXN_MAX || nfail > SL_ETCD_TXN_MAX)
        return -1;
    static const Etcdserverpb__Compare__CompareTarget targets[] = {
        ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION, ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE,
        ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE,
    };
    static const Etcdserverpb__Compare__CompareResult results[] = {
        ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER,
        ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS, ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL,
    };
    Etcdserverpb__Compare cmp[SL_ETCD_TXN_MAX], *pc[SL_ETCD_TXN_MAX];
    for (size_t i = 0; i < ncmp; i++) {
        cmp[i] = (Etcdserverpb__Compare)ETCDSERVERPB__COMPARE__INIT;
        pc[i] = &cmp[i];
        cmp[i].key = bytes_of(cmps[i].key, strlen(cmps[i].key));
        cmp[i].target = targets[cmps[i].target];
        cmp[i].result = results[cmps[i].op];
        switch (cmps[i].target) {
        case SL_CMP_VERSION:
            cmp[i].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
            cmp[i].version = cmps[i].number;
            break;
        case SL_CMP_CREATE:
            cmp[i].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
            cmp[i].create_revision = cmps[i].number;
            break;
        case SL_CMP_MOD:
            cmp[i].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
            cmp[i].mod_revision = cmps[i].number;
            break;
        case SL_CMP_VALUE:
            cmp[i].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
            cmp[i].value = bytes_of(cmps[i].value, cmps[i].value_len);
            break;
        }
    }
    txn_branch *b = malloc(2 * sizeof *b);
    if (!b)
        return -1;
    txn_ops(&b[0], ok, nok);
    txn_ops(&b[1], fail, nfail);
    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    req.n_compare = ncmp;
    req.compare = pc;
    req.n_success = nok;
    req.success = b[0].ops;
    req.n_failure = nfail;
    req.failure = b[1].ops;
    int rc = run(e, OP_TXN, &req.base, cb, ud);
    free(b);
    return rc;
}

int sl_etcd_cas(sl_etcd *e, const char *key, const void *value, size_t len, int64_t expect,
                sl_etcd_cb cb, void *ud)
{
    sl_etcd_cmp cmp = {.key = key, .target = SL_CMP_MOD, .op = SL_CMP_EQUAL, .number = expect};
    sl_etcd_txn_op put = {.kind = SL_TXN_PUT, .key = key, .value = value, .value_len = len};
    sl_etcd_txn_op get = {.kind = SL_TXN_RANGE, .key = key};
    return sl_etcd_txn(e, &cmp, 1, &put, 1, &get, 1, cb, ud);
}

int sl_etcd_lease_grant(sl_etcd *e, int64_t ttl_s, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    req.ttl = ttl_s;
    return run(e, OP_GRANT, &req.base, cb, ud);
}

int sl_etcd_lease_revoke(sl_etcd *e, int64_t id, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    req.id = id;
    return run(e, OP_REVOKE, &req.base, cb, ud);
}

/* ---- watches ------------------------------------------------------------------------------- */

static void frag_clear(sl_etcd_watch *w)
{
    for (size_t i = 0; i < w->nmem; i++)
        free(w->frag_mem[i]);
    w->nmem = w->nfrag = 0;
}

static const uint8_t *frag_copy(sl_etcd_watch *w, const uint8_t *p, size_t n)
{
    if (w->nmem == w->capmem) {
        size_t cap = w->capmem ? w->capmem * 2 : 64;
        uint8_t **m = realloc(w->frag_mem, cap * sizeof *m);
        if (!m)
            return NULL;
        w->frag_mem = m;
        w->capmem = cap;
    }
    uint8_t *c = malloc(n ? n : 1);
    if (!c)
        return NULL;
    memcpy(c, p, n);
    w->frag_mem[w->nmem++] = c;
    return c;
}

static sl_etcd_watch *watch_by_id(sl_etcd *e, int64_t id)
{
    for (sl_etcd_watch *w = e->watches; w; w = w->next)
        if (w->id == id)
            return w;
    return NULL;
}

/* One WatchResponse for watch w. */
static void watch_response(sl_etcd_watch *w, const Etcdserverpb__WatchResponse *m)
{
    int64_t hrev = header_rev(m->header);
    if (m->canceled) {
        w->active = false;
        w->sent = false;
        frag_clear(w);
        if (m->compact_revision > 0 && w->h.on_compacted)
            w->h.on_compacted(w->ud, m->compact_revision);
        else
            fprintf(stderr, "sightline: etcd watch canceled: %s\n",
                    m->cancel_reason ? m->cancel_reason : "");
        return;
    }
    if (m->created) {
        if (w->next_rev == 0)
            w->next_rev = hrev + 1;     /* "from now": resume after the created revision */
        if (!m->n_events)
            return;
    }
    if (m->n_events == 0) {
        /* A progress notification: later events are all above hrev. */
        if (hrev + 1 > w->next_rev)
            w->next_rev = hrev + 1;
        if (w->h.on_progress)
            w->h.on_progress(w->ud, hrev);
        return;
    }
    /* Collect (copies, when a fragment follows) and deliver whole revisions. */
    size_t need = w->nfrag + m->n_events;
    if (need > w->capfrag) {
        sl_etcd_event *f = realloc(w->frag, need * sizeof *f);
        if (!f)
            return;
        w->frag = f;
        w->capfrag = need;
    }
    for (size_t i = 0; i < m->n_events; i++) {
        const Mvccpb__Event *ev = m->events[i];
        sl_etcd_event *out = &w->frag[w->nfrag++];
        out->deleted = ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
        if (ev->kv)
            kv_of(ev->kv, &out->kv);
        else
            memset(&out->kv, 0, sizeof out->kv);
        out->has_prev = ev->prev_kv != NULL;
        if (ev->prev_kv)
            kv_of(ev->prev_kv, &out->prev);
        else
            memset(&out->prev, 0, sizeof out->prev);
        if (m->fragment) {
            out->kv.key = frag_copy(w, out->kv.key, out->kv.key_len);
            out->kv.value = frag_copy(w, out->kv.value, out->kv.value_len);
            out->prev.key = frag_copy(w, out->prev.key, out->prev.key_len);
            out->prev.value = frag_copy(w, out->prev.value, out->prev.value_len);
        }
    }
    if (m->fragment) {
        w->fragments++;
        return;
    }
    int64_t last = w->frag[w->nfrag - 1].kv.mod_revision;
    if (w->h.on_events)
        w->h.on_events(w->ud, w->frag, w->nfrag);
    if (last + 1 > w->next_rev)
        w->next_rev = last + 1;
    frag_clear(w);
}

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
    if (!e->freed && e->g && sl_grpc_is_up(e->g) && e->watches)
        watch_stream_open(e);
}

static void watch_stream_open(sl_etcd *e)
{
    if (e->wstream || !e->g || e->freed)
        return;
    static const char *const hdr[] = {"hasleader", "true", NULL};
    sl_grpc_handlers h = {wstream_message, wstream_close};
    e->wstream = sl_grpc_start(e->g, "/etcdserverpb.Watch/Watch", 0, &h, e, hdr);
    watches_send(e);
}

static void watch_send_create(sl_etcd *e, sl_etcd_watch *w)
{
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = bytes_of(w->key, w->klen);
    if (w->end)
        cr.range_end = bytes_of(w->end, w->elen);
    cr.start_revision = w->next_rev;
    cr.progress_notify = true;
    cr.fragment = true;
    cr.prev_kv = w->prev_kv;
    cr.watch_id = w->id;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    uint8_t b[1024];
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    if (len > sizeof b)
        return;
    protobuf_c_message_pack(&req.base, b);
    if (sl_grpc_send(e->wstream, b, len, false) == 0)
        w->sent = true;
}

static void watches_send(sl_etcd *e)
{
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
    if (!w->key) {
        free(w);
        return NULL;
    }
    memcpy(w->key, key, w->klen + 1);
    if (prefix) {
        w->end = malloc(w->klen + 1);
        if (!w->end) {
            free(w->key);
            free(w);
            return NULL;
        }
        w->elen = sl_etcd_prefix_end(key, w->klen, w->end, w->klen + 1);
    }
    w->id = ++e->next_watch_id;
    w->next_rev = start_revision;
    w->active = true;
    w->h = *h;
    w->ud = ud;
    w->next = e->watches;
    e->watches = w;
    if (e->wstream)
        watch_send_create(e, w);
    else if (e->g && sl_grpc_is_up(e->g))
        watch_stream_open(e);
    return w;
}

void sl_etcd_watch_restart(sl_etcd_watch *w, int64_t start_revision)
{
    w->next_rev = start_revision;
    w->active = true;
    w->sent = false;
    if (w->e->wstream)
        watch_send_create(w->e, w);
}

void sl_etcd_watch_prev_kv(sl_etcd_watch *w, bool on)
{
    /* Takes effect on the watch's next creation on the stream: recreate it now. */
    w->prev_kv = on;
    if (w->e->wstream && w->sent && w->active) {
        Etcdserverpb__WatchCancelRequest cr = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
        cr.watch_id = w->id;
        Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
        req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
        req.cancel_request = &cr;
        uint8_t b[64];
        size_t len = protobuf_c_message_pack(&req.base, b);
        sl_grpc_send(w->e->wstream, b, len, false);
        w->id = ++w->e->next_watch_id;      /* the cancel's answer names the old id */
        watch_send_create(w->e, w);
    }
}

uint64_t sl_etcd_watch_fragments(const sl_etcd_watch *w)
{
    return w->fragments;
}

int64_t sl_etcd_watch_next(const sl_etcd_watch *w)
{
    return w->next_rev;
}

void sl_etcd_watch_stop(sl_etcd_watch *w)
{
    sl_etcd *e = w->e;
    if (e->wstream && w->sent) {
        Etcdserverpb__WatchCancelRequest cr = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
        cr.watch_id = w->id;
        Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
        req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
        req.cancel_request = &cr;
        uint8_t b[64];
        size_t len = protobuf_c_message_pack(&req.base, b);
        sl_grpc_send(e->wstream, b, len, false);
    }
    for (sl_etcd_watch **p = &e->watches; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    frag_clear(w);
    free(w->frag);
    free(w->frag_mem);
    free(w->key);
    free(w->end);
    free(w);
    if (!e->watches && e->wstream) {
        sl_grpc_call *c = e->wstream;
        e->wstream = NULL;
        sl_grpc_cancel(c);
    }
}

/* ---- leases kept alive ------------------------------------------------------------------- */

static void lease_grant(sl_etcd_lease *l);

static void lease_unref(sl_etcd_lease *l)
{
    if (--l->refs == 0)
        free(l);
}

static void lease_lost(sl_etcd_lease *l, const char *why)
{
    if (!l->id)
        return;
    fprintf(stderr, "sightline: etcd lease %lld lost: %s\n", (long long)l->id, why);
    int64_t id = l->id;
    l->id = 0;
    l->losses++;
    if (l->fn)
        l->fn(l->ud, l, id, false);
    if (!l->released)
        lease_grant(l);
}

static sl_etcd_lease *lease_by_id(sl_etcd *e, int64_t id)
{
    for (sl_etcd_lease *l = e->leases; l; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

static void kstream_message(void *ud, sl_grpc_call *c, const uint8_t *msg, size_t len)
{
    (void)c;
    sl_etcd *e = ud;
    Etcdserverpb__LeaseKeepAliveResponse *m =
        etcdserverpb__lease_keep_alive_response__unpack(NULL, len, msg);
    if (!m)
        return;
    sl_etcd_lease *l = lease_by_id(e, m->id);
    if (l) {
        if (m->ttl <= 0)
            lease_lost(l, "etcd says it has expired");
        else
            l->last_ok = uv_now(e->loop);
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void kstream_close(void *ud, sl_grpc_call *c, const sl_grpc_status *st)
{
    (void)c;
    (void)st;
    sl_etcd *e = ud;
    e->kstream = NULL;      /* reopened by the next keepalive */
}

static void lease_send(sl_etcd_lease *l)
{
    sl_etcd *e = l->e;
    if (!e->kstream && e->g && sl_grpc_is_up(e->g)) {
        sl_grpc_handlers h = {kstream_message, kstream_close};
        static const char *const hdr[] = {"hasleader", "true", NULL};
        e->kstream = sl_grpc_start(e->g, "/etcdserverpb.Lease/LeaseKeepAlive", 0, &h, e, hdr);
    }
    if (!e->kstream)
        return;
    Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = l->id;
    uint8_t b[32];
    size_t len = protobuf_c_message_pack(&req.base, b);
    sl_grpc_send(e->kstream, b, len, false);
}

static void on_lease_timer(uv_timer_t *t)
{
    sl_etcd_lease *l = (sl_etcd_lease *)t;
    if (l->released || l->granting)
        return;
    if (!l->id) {
        lease_grant(l);     /* a grant failed earlier: try again */
        return;
    }
    /* No good keepalive for a whole TTL: etcd has let it go (or we cannot tell: same). */
    if (uv_now(l->e->loop) - l->last_ok >= (uint64_t)l->ttl * 1000) {
        lease_lost(l, "no keepalive answer within its TTL");
        return;
    }
    lease_send(l);
}

static void on_granted(void *ud, const sl_etcd_result *r)
{
    sl_etcd_lease *l = ud;
    l->granting = false;
    if (l->released) {
        /* Released while the grant was in flight: give it back (unless the client is
         * going away too). */
        if (r->status.code == 0 && r->lease_id && !l->e->freed)
            sl_etcd_lease_revoke(l->e, r->lease_id, NULL, NULL);
    } else if (r->status.code != 0) {
        fprintf(stderr, "sightline: etcd lease grant failed: %d %s (retrying)\n",
                r->status.code, r->status.message);     /* the timer retries */
    } else {
        l->id = r->lease_id;
        l->last_ok = uv_now(l->e->loop);
        if (l->fn)
            l->fn(l->ud, l, l->id, true);
    }
    lease_unref(l);
}

static void lease_grant(sl_etcd_lease *l)
{
    l->granting = true;
    l->refs++;
    if (sl_etcd_lease_grant(l->e, l->ttl, on_granted, l)) {
        l->granting = false;
        l->refs--;
    }
}

sl_etcd_lease *sl_etcd_lease_keep(sl_etcd *e, int64_t ttl_s, sl_etcd_lease_fn fn, void *ud)
{
    sl_etcd_lease *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->e = e;
    l->ttl = ttl_s > 0 ? ttl_s : 1;
    l->fn = fn;
    l->ud = ud;
    uv_timer_init(e->loop, &l->timer);
    l->refs = 1;
    uint64_t every = (uint64_t)l->ttl * 1000 / 3;
    uv_timer_start(&l->timer, on_lease_timer, every ? every : 1, every ? every : 1);
    l->next = e->leases;
    e->leases = l;
    lease_grant(l);
    return l;
}

static void lease_closed(uv_handle_t *h)
{
    lease_unref((sl_etcd_lease *)h);
}

void sl_etcd_lease_release(sl_etcd_lease *l, bool revoke)
{
    sl_etcd *e = l->e;
    l->released = true;
    if (revoke && l->id)
        sl_etcd_lease_revoke(e, l->id, NULL, NULL);
    for (sl_etcd_lease **p = &e->leases; *p; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            break;
        }
    }
    if (!e->leases && e->kstream) {
        sl_grpc_call *c = e->kstream;
        e->kstream = NULL;
        sl_grpc_cancel(c);
    }
    /* The struct goes when its timer is closed and no grant is in flight. */
    uv_close((uv_handle_t *)&l->timer, lease_closed);
}

int64_t sl_etcd_lease_id(const sl_etcd_lease *l)
{
    return l->id;
}

uint64_t sl_etcd_lease_losses(const sl_etcd_lease *l)
{
    return l->losses;
}
