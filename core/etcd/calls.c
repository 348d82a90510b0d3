/*
 * calls.c: the etcd client's unary calls (see etcd.h): Range, Put, DeleteRange, Txn (and
 * CAS on it), LeaseGrant and LeaseRevoke. Each packs its request, runs it on the client's
 * connection (etcd.c) as one op, and reads the response into an sl_etcd_result.
 *
 * Every unary call ends with exactly one callback, from the loop. A call made while the
 * client has no connection is failed with UNAVAILABLE from a zero timer, not from inside
 * the function that started it; a call in flight ends with the status gRPC gives it (its
 * deadline, a lost connection, etcd's answer). Only a failed allocation returns an error
 * at once, and then the callback never comes. (One corner breaks the "not from inside"
 * rule: a request that gRPC cannot queue for want of memory is canceled at once, and its
 * callback runs before the call returns.)
 */
#include "etcd/etcd_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    OP_RANGE, OP_PUT, OP_DELETE, OP_TXN, OP_GRANT, OP_REVOKE, OP_AUTH, OP_ALARM, OP_TTL
} op_kind;

/* One unary call: lives from run() until its callback has returned. */
typedef struct op {
    sl_etcd *e;
    op_kind kind;
    sl_etcd_cb cb;
    void *ud;
    uint8_t *resp;              /* the response message, copied (a unary call has one) */
    size_t resp_len;
    bool got;
    sl__etcd_seen sent;         /* etcd's history as seen when the call was sent */
    uv_timer_t fail_timer;      /* reports a call that could not start; its close frees op */
    sl_grpc_status early;       /* what fail_timer reports */
    /* With authentication: the packed request, kept to wait for a token or to be made once
     * more after a refused one. */
    uint8_t *req;
    size_t req_len;
    bool retried;
    struct op *next;            /* in e->waiting */
} op;

/* Fills a status with a code and a message. */
static void set_status(sl_grpc_status *st, int code, const char *msg)
{
    st->code = code;
    snprintf(st->message, sizeof st->message, "%s", msg);
}

/* ---- responses ----------------------------------------------------------------------------- */

/* What a result points into, kept until the callback has returned. */
typedef struct reply {
    ProtobufCMessage *msg;      /* the unpacked response */
    sl_etcd_kv one;             /* Put's prev_kv */
    sl_etcd_kv *many;           /* Range's, DeleteRange's and Txn's key-values (malloc) */
} reply;

/*
 * Flattens n protobuf key-values into a new array for r; returns it (the caller frees it).
 * Out of memory, r gets no key-values (the call still reports success).
 */
static sl_etcd_kv *kvs_of(Mvccpb__KeyValue **kvs, size_t n, sl_etcd_result *r)
{
    sl_etcd_kv *many = calloc(n ? n : 1, sizeof *many);
    for (size_t i = 0; many && i < n; i++)
        sl__etcd_kv_of(kvs[i], &many[i]);
    r->kvs = many;
    r->nkvs = many ? n : 0;
    return many;
}

static void read_range(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    const Etcdserverpb__RangeResponse *m = (const Etcdserverpb__RangeResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    r->more = m->more;
    r->count = m->count;
    rp->many = kvs_of(m->kvs, m->n_kvs, r);
}

static void read_put(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    const Etcdserverpb__PutResponse *m = (const Etcdserverpb__PutResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    if (m->prev_kv) {
        sl__etcd_kv_of(m->prev_kv, &rp->one);
        r->kvs = &rp->one;
        r->nkvs = 1;
    }
}

static void read_delete(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    const Etcdserverpb__DeleteRangeResponse *m = (const Etcdserverpb__DeleteRangeResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    r->deleted = m->deleted;
    rp->many = kvs_of(m->prev_kvs, m->n_prev_kvs, r);
}

/*
 * A txn's result: the key-values of the branch's Range ops, in op order, and the sum of
 * what its deletes removed. The response_* pointers of a ResponseOp share a union: only
 * response_case says which one is there.
 */
static void read_txn(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    const Etcdserverpb__TxnResponse *m = (const Etcdserverpb__TxnResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    r->succeeded = m->succeeded;
    size_t total = 0;
    for (size_t i = 0; i < m->n_responses; i++)
        if (m->responses[i]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
            total += m->responses[i]->response_range->n_kvs;
    sl_etcd_kv *many = calloc(total ? total : 1, sizeof *many);
    for (size_t i = 0; many && i < m->n_responses; i++) {
        const Etcdserverpb__ResponseOp *ro = m->responses[i];
        if (ro->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
            for (size_t k = 0; k < ro->response_range->n_kvs; k++)
                sl__etcd_kv_of(ro->response_range->kvs[k], &many[r->nkvs++]);
        else if (ro->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE)
            r->deleted += ro->response_delete_range->deleted;
    }
    r->kvs = many;
    rp->many = many;
}

/* A grant that etcd refused comes as a response with `error` set, not as a gRPC status. */
static void read_grant(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    (void)rp;
    const Etcdserverpb__LeaseGrantResponse *m = (const Etcdserverpb__LeaseGrantResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    r->lease_id = m->id;
    r->ttl = m->ttl;
    if (m->error && m->error[0])
        set_status(&r->status, SL_GRPC_UNKNOWN, m->error);
}

static void read_revoke(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    (void)rp;
    r->revision = sl__etcd_header_rev(((const Etcdserverpb__LeaseRevokeResponse *)msg)->header);
}

static void read_ttl(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    (void)rp;
    const Etcdserverpb__LeaseTimeToLiveResponse *m =
        (const Etcdserverpb__LeaseTimeToLiveResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    r->lease_id = m->id;
    r->ttl = m->ttl;
}

static void read_alarm(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    (void)rp;
    const Etcdserverpb__AlarmResponse *m = (const Etcdserverpb__AlarmResponse *)msg;
    r->revision = sl__etcd_header_rev(m->header);
    for (size_t i = 0; i < m->n_alarms; i++)
        if (m->alarms[i]->alarm > 0 && m->alarms[i]->alarm < 32)
            r->alarms |= 1u << m->alarms[i]->alarm;
}

/* (The token itself is taken in deliver, which has the client.) */
static void read_auth(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp)
{
    (void)rp;
    r->revision = sl__etcd_header_rev(((const Etcdserverpb__AuthenticateResponse *)msg)->header);
}

/* What each kind of unary call is: its method, its response message, how to read it. */
static const struct op_type {
    const char *path;
    const ProtobufCMessageDescriptor *response;
    void (*read)(const ProtobufCMessage *msg, sl_etcd_result *r, reply *rp);
} op_types[] = {
    [OP_RANGE] = {"/etcdserverpb.KV/Range", &etcdserverpb__range_response__descriptor,
                  read_range},
    [OP_PUT] = {"/etcdserverpb.KV/Put", &etcdserverpb__put_response__descriptor, read_put},
    [OP_DELETE] = {"/etcdserverpb.KV/DeleteRange",
                   &etcdserverpb__delete_range_response__descriptor, read_delete},
    [OP_TXN] = {"/etcdserverpb.KV/Txn", &etcdserverpb__txn_response__descriptor, read_txn},
    [OP_GRANT] = {"/etcdserverpb.Lease/LeaseGrant",
                  &etcdserverpb__lease_grant_response__descriptor, read_grant},
    [OP_REVOKE] = {"/etcdserverpb.Lease/LeaseRevoke",
                   &etcdserverpb__lease_revoke_response__descriptor, read_revoke},
    [OP_ALARM] = {"/etcdserverpb.Maintenance/Alarm", &etcdserverpb__alarm_response__descriptor,
                  read_alarm},
    [OP_TTL] = {"/etcdserverpb.Lease/LeaseTimeToLive",
                &etcdserverpb__lease_time_to_live_response__descriptor, read_ttl},
    [OP_AUTH] = {"/etcdserverpb.Auth/Authenticate",
                 &etcdserverpb__authenticate_response__descriptor, read_auth},
};

/* Unpacks o's response into r (a call that gRPC called OK but that brought no message, or
 * an unreadable one, becomes INTERNAL). */
static void read_reply(const op *o, sl_etcd_result *r, reply *rp)
{
    const struct op_type *t = &op_types[o->kind];
    if (!o->got) {
        set_status(&r->status, SL_GRPC_INTERNAL, "no response message");
        return;
    }
    rp->msg = protobuf_c_message_unpack(t->response, NULL, o->resp_len, o->resp);
    if (!rp->msg) {
        set_status(&r->status, SL_GRPC_INTERNAL, "malformed response");
        return;
    }
    /* Every response's field 1 is its header: the client's health reads it (KV answers are
     * linearizable: a revision below one seen before means another history). */
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(t->response, 1);
    if (f && f->type == PROTOBUF_C_TYPE_MESSAGE)
        sl__etcd_header(o->e, *(Etcdserverpb__ResponseHeader **)((char *)rp->msg + f->offset),
                        o->kind == OP_RANGE || o->kind == OP_PUT || o->kind == OP_DELETE ||
                                o->kind == OP_TXN ? &o->sent : NULL);
    t->read(rp->msg, r, rp);
}

static bool op_wait(op *o);

/* Calls o's callback with its result (the response unpacked when the status is OK). A
 * call refused for its token waits for a new one and is made once more instead (then
 * false: the op lives on). */
static bool deliver(op *o, const sl_grpc_status *st)
{
    if (o->kind != OP_AUTH && o->e->user && !o->retried && !o->e->freed &&
        sl__etcd_auth_error(st)) {
        o->retried = true;
        sl__etcd_auth_refused(o->e);
        if (op_wait(o))
            return false;
    }
    sl_etcd_result r = {.status = *st};
    reply rp = {0};
    if (st->code == 0)
        read_reply(o, &r, &rp);
    if (o->kind == OP_AUTH && r.status.code == 0) {
        const char *t = ((const Etcdserverpb__AuthenticateResponse *)rp.msg)->token;
        free(o->e->token);
        if (!(o->e->token = strdup(t ? t : "")))
            set_status(&r.status, SL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (o->kind == OP_AUTH && strstr(r.status.message, "authentication is not enabled")) {
        /* A user given, but etcd does not check: no token, and calls go without. */
        free(o->e->token);
        o->e->token = strdup("");
        r.status = (sl_grpc_status){0};
    }
    if (r.status.code == 0)
        sl__etcd_ok(o->e);
    else if (sl__etcd_no_leader(&r.status) || strstr(r.status.message, "request timed out"))
        /* The member cannot serve (cut off from its quorum): move on. */
        sl__etcd_endpoint_failed(o->e, r.status.message);
    if (o->cb)
        o->cb(o->ud, &r);
    free(rp.many);
    if (rp.msg)
        protobuf_c_message_free_unpacked(rp.msg, NULL);
    return true;
}

/* ---- unary calls --------------------------------------------------------------------------- */

/* Keeps the response until the call closes (gRPC's buffer is gone after this returns). */
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

/* The close callback of o's timer: the op's last moment. */
static void op_free(uv_handle_t *h)
{
    op *o = h->data;
    free(o->resp);
    free(o->req);
    free(o);
}

/* The call is over, for any reason: the result goes out, then the op is freed. */
static void op_on_close(void *ud, sl_grpc_call *c, const sl_grpc_status *st)
{
    (void)c;
    op *o = ud;
    if (deliver(o, st))
        uv_close((uv_handle_t *)&o->fail_timer, op_free);
}

static void op_fail_now(uv_timer_t *t)
{
    op *o = t->data;
    if (deliver(o, &o->early))
        uv_close((uv_handle_t *)&o->fail_timer, op_free);
}

/* Starts o's call with its packed request; every failure reaches o's callback later. */
static void op_send(op *o, const uint8_t *req, size_t len)
{
    sl_etcd *e = o->e;
    sl_grpc_handlers h = {op_on_message, op_on_close};
    sl_grpc_call *c;
    bool tok = e->token && e->token[0] && o->kind != OP_AUTH;
    const char *hdr[] = {tok ? "token" : NULL, e->token, NULL};
    free(o->resp);
    o->resp = NULL;
    o->got = false;
    if (e->g && sl_grpc_start(&c, e->g, op_types[o->kind].path, e->cfg.timeout_ms, &h, o,
                              hdr) == 0) {
        if (sl_grpc_send(c, req, len, true))
            sl_grpc_cancel(c);      /* its on_close reports it */
        return;
    }
    /* Not connected: say so from the loop, never from inside the caller's call. */
    o->early.code = SL_GRPC_UNAVAILABLE;
    snprintf(o->early.message, sizeof o->early.message,
             "not connected to etcd (reconnecting to %s)", e->endpoint);
    uv_timer_start(&o->fail_timer, op_fail_now, 0, 0);
}

/* Packs req and starts a unary call of that kind; 0 (cb will come) or SL_ENOMEM. */
static int run(sl_etcd *e, op_kind kind, const ProtobufCMessage *req, sl_etcd_cb cb, void *ud)
{
    op *o = malloc(sizeof *o);
    if (!o)
        return SL_ENOMEM;
    *o = (op){.e = e, .kind = kind, .cb = cb, .ud = ud, .sent = sl__etcd_seen_now(e)};
    uv_timer_init(e->loop, &o->fail_timer);
    o->fail_timer.data = o;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t stackbuf[4096], *b = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!b) {
        uv_close((uv_handle_t *)&o->fail_timer, op_free);
        return SL_ENOMEM;
    }
    protobuf_c_message_pack(req, b);
    if (e->user && kind != OP_AUTH) {
        /* Kept: the call may wait for a token, or be made again with a new one. */
        if (!(o->req = malloc(len ? len : 1))) {
            if (b != stackbuf)
                free(b);
            uv_close((uv_handle_t *)&o->fail_timer, op_free);
            return SL_ENOMEM;
        }
        memcpy(o->req, b, len);
        o->req_len = len;
    }
    if (!op_wait(o))
        op_send(o, b, len);     /* copies the bytes */
    if (b != stackbuf)
        free(b);
    return 0;
}

/* ---- authentication ------------------------------------------------------------------------ */

bool sl__etcd_ready(const sl_etcd *e)
{
    return e->g && sl_grpc_is_up(e->g) && (!e->user || e->token);
}

bool sl__etcd_auth_error(const sl_grpc_status *st)
{
    return st->code == 16 || strstr(st->message, "invalid auth token") ||
           strstr(st->message, "user name is empty");
}

/* Queues o until a token comes, when authentication is under way on a live connection:
 * true if queued. */
static bool op_wait(op *o)
{
    sl_etcd *e = o->e;
    if (!o->req || !e->g || !sl_grpc_is_up(e->g) || e->token)
        return false;
    o->next = e->waiting;
    e->waiting = o;
    sl__etcd_auth_start(e);
    return true;
}

/* Sends (or, with why, fails) every call waiting for the token. */
static void release_waiting(sl_etcd *e, const char *why)
{
    op *list = e->waiting, *rev = NULL;
    e->waiting = NULL;
    while (list) {          /* in the order they were made */
        op *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        op *o = rev;
        rev = rev->next;
        o->next = NULL;
        if (why) {
            o->early.code = SL_GRPC_UNAVAILABLE;
            snprintf(o->early.message, sizeof o->early.message, "%s", why);
            o->retried = true;      /* fail it, do not queue it again */
            uv_timer_start(&o->fail_timer, op_fail_now, 0, 0);
        } else {
            op_send(o, o->req, o->req_len);
        }
    }
}

/* Authenticate's answer: the token, then the waiting calls and the connection's probes. */
static void auth_done(void *ud, const sl_etcd_result *r)
{
    sl_etcd *e = ud;
    e->authing = false;
    if (e->freed)
        return;
    if (r->status.code != 0 || !e->token) {
        char why[200];
        snprintf(why, sizeof why, "authentication as %.40s failed: %.120s", e->user,
                 r->status.message);
        release_waiting(e, why);
        if (r->status.code != SL_GRPC_CANCELLED && r->status.code != SL_GRPC_UNAVAILABLE)
            sl__etcd_endpoint_failed(e, why);
        return;
    }
    e->auths++;             /* deliver took the token */
    release_waiting(e, NULL);
    sl__etcd_became_ready(e);
}

void sl__etcd_auth_start(sl_etcd *e)
{
    if (!e->user || e->authing || e->freed || !e->g || !sl_grpc_is_up(e->g))
        return;
    Etcdserverpb__AuthenticateRequest req = ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
    req.name = e->user;
    req.password = e->password;
    if (run(e, OP_AUTH, &req.base, auth_done, e) == 0)
        e->authing = true;
}

void sl__etcd_auth_refused(sl_etcd *e)
{
    free(e->token);
    e->token = NULL;
    sl__etcd_auth_start(e);
}

void sl__etcd_auth_conn_lost(sl_etcd *e)
{
    free(e->token);
    e->token = NULL;
    release_waiting(e, "the connection to etcd was lost while authenticating");
}

/* ---- requests ------------------------------------------------------------------------------ */

/*
 * etcd's "prefix + 1": the prefix with its last byte below 0xff incremented and what
 * follows dropped, so that [prefix, end) holds exactly the keys starting with prefix.
 */
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

/* The "prefix + 1" end of key into buf (cap bytes) or, for a longer key, a new buffer
 * (*heap: free it); NULL out of memory. */
static char *end_of(const char *key, size_t klen, char *buf, size_t cap, char **heap,
                    size_t *elen)
{
    *heap = NULL;
    char *end = buf;
    if (klen + 1 > cap && !(end = *heap = malloc(klen + 1)))
        return NULL;
    *elen = sl_etcd_prefix_end(key, klen, end, klen + 1);
    return end;
}

/* A string key (any length), and for a prefix its "prefix + 1" end. */
int sl_etcd_range(sl_etcd *e, const char *key, bool prefix, int64_t revision, int64_t limit,
                  sl_etcd_cb cb, void *ud)
{
    char buf[256], *heap = NULL, *end = NULL;
    size_t klen = strlen(key), elen = 0;
    if (prefix && !(end = end_of(key, klen, buf, sizeof buf, &heap, &elen)))
        return SL_ENOMEM;
    int rc = sl_etcd_range_ex(e, key, klen, end, elen, revision, limit, cb, ud);
    free(heap);
    return rc;
}

int sl_etcd_range_ex(sl_etcd *e, const void *key, size_t klen, const void *end, size_t elen,
                     int64_t revision, int64_t limit, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = sl__etcd_bytes(key, klen);
    if (end)
        req.range_end = sl__etcd_bytes(end, elen);
    req.revision = revision;
    req.limit = limit;
    return run(e, OP_RANGE, &req.base, cb, ud);
}

int sl_etcd_put(sl_etcd *e, const char *key, const void *value, size_t len, int64_t lease,
                bool prev_kv, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = sl__etcd_bytes(key, strlen(key));
    req.value = sl__etcd_bytes(value, len);
    req.lease = lease;
    req.prev_kv = prev_kv;
    return run(e, OP_PUT, &req.base, cb, ud);
}

int sl_etcd_delete(sl_etcd *e, const char *key, bool prefix, bool prev_kv, sl_etcd_cb cb,
                   void *ud)
{
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    char buf[256], *heap = NULL, *end;
    size_t klen = strlen(key), elen;
    req.key = sl__etcd_bytes(key, klen);
    if (prefix) {
        if (!(end = end_of(key, klen, buf, sizeof buf, &heap, &elen)))
            return SL_ENOMEM;
        req.range_end = sl__etcd_bytes(end, elen);
    }
    req.prev_kv = prev_kv;
    int rc = run(e, OP_DELETE, &req.base, cb, ud);
    free(heap);
    return rc;
}

/*
 * The protobuf-c messages of one branch of a txn, in caller storage: protobuf-c packs a
 * tree of pointers, so every RequestOp and the request it points at must live until the
 * TxnRequest is packed (in run); nothing here is allocated per op.
 */
typedef struct txn_branch {
    Etcdserverpb__RequestOp op[SL_ETCD_TXN_MAX], *ops[SL_ETCD_TXN_MAX];
    Etcdserverpb__RangeRequest range[SL_ETCD_TXN_MAX];
    Etcdserverpb__PutRequest put[SL_ETCD_TXN_MAX];
    Etcdserverpb__DeleteRangeRequest del[SL_ETCD_TXN_MAX];
    char end[SL_ETCD_TXN_MAX][256];
    char *heap[SL_ETCD_TXN_MAX];    /* the ends of longer prefixes (free them) */
} txn_branch;

static void txn_free(txn_branch *b)
{
    for (size_t i = 0; i < SL_ETCD_TXN_MAX; i++)
        free(b->heap[i]);
}

/* Builds the RequestOps of one branch into b (n <= SL_ETCD_TXN_MAX); SL_ENOMEM when the
 * end of a long prefix cannot be had (txn_free b either way). */
static int txn_ops(txn_branch *b, const sl_etcd_txn_op *in, size_t n)
{
    memset(b->heap, 0, sizeof b->heap);
    for (size_t i = 0; i < n; i++) {
        size_t klen = strlen(in[i].key), elen;
        ProtobufCBinaryData key = sl__etcd_bytes(in[i].key, klen), end = {0, NULL};
        if (in[i].prefix) {
            char *p = end_of(in[i].key, klen, b->end[i], sizeof b->end[i], &b->heap[i], &elen);
            if (!p)
                return SL_ENOMEM;
            end = sl__etcd_bytes(p, elen);
        }
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
            b->put[i].value = sl__etcd_bytes(in[i].value, in[i].value_len);
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
    return 0;
}

/* Builds one Compare: the target says both what to compare (target) and which member of
 * the target union holds the number or value to compare with (target_union_case). */
static void txn_compare(Etcdserverpb__Compare *out, const sl_etcd_cmp *in)
{
    static const struct {
        Etcdserverpb__Compare__CompareTarget target;
        Etcdserverpb__Compare__TargetUnionCase member;
    } targets[] = {
        [SL_CMP_VERSION] = {ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
                            ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION},
        [SL_CMP_CREATE] = {ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE,
                           ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION},
        [SL_CMP_MOD] = {ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD,
                        ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION},
        [SL_CMP_VALUE] = {ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE,
                          ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE},
    };
    static const Etcdserverpb__Compare__CompareResult results[] = {
        ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER,
        ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS, ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL,
    };
    *out = (Etcdserverpb__Compare)ETCDSERVERPB__COMPARE__INIT;
    out->key = sl__etcd_bytes(in->key, strlen(in->key));
    out->target = targets[in->target].target;
    out->target_union_case = targets[in->target].member;
    out->result = results[in->op];
    if (in->target == SL_CMP_VALUE)
        out->value = sl__etcd_bytes(in->value, in->value_len);
    else if (in->target == SL_CMP_VERSION)
        out->version = in->number;
    else if (in->target == SL_CMP_CREATE)
        out->create_revision = in->number;
    else
        out->mod_revision = in->number;
}

int sl_etcd_txn(sl_etcd *e, const sl_etcd_cmp *cmps, size_t ncmp, const sl_etcd_txn_op *ok,
                size_t nok, const sl_etcd_txn_op *fail, size_t nfail, sl_etcd_cb cb, void *ud)
{
    if (ncmp > SL_ETCD_TXN_MAX || nok > SL_ETCD_TXN_MAX || nfail > SL_ETCD_TXN_MAX)
        return SL_ELIMIT;
    Etcdserverpb__Compare cmp[SL_ETCD_TXN_MAX], *pc[SL_ETCD_TXN_MAX];
    for (size_t i = 0; i < ncmp; i++) {
        txn_compare(&cmp[i], &cmps[i]);
        pc[i] = &cmp[i];
    }
    /* The two branches' messages (about 17 KB each) are kept off the stack. */
    txn_branch *b = malloc(2 * sizeof *b);
    if (!b)
        return SL_ENOMEM;
    int rc = txn_ops(&b[0], ok, nok);
    int rc2 = txn_ops(&b[1], fail, nfail);
    if (rc || rc2) {
        txn_free(&b[0]);
        txn_free(&b[1]);
        free(b);
        return SL_ENOMEM;
    }
    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    req.n_compare = ncmp;
    req.compare = pc;
    req.n_success = nok;
    req.success = b[0].ops;
    req.n_failure = nfail;
    req.failure = b[1].ops;
    rc = run(e, OP_TXN, &req.base, cb, ud);
    txn_free(&b[0]);
    txn_free(&b[1]);
    free(b);
    return rc;
}

/* The failure branch reads the key, so a refused CAS tells the caller what is there now:
 * no second round trip, and no race between the compare and the read. */
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

int sl_etcd_lease_ttl(sl_etcd *e, int64_t id, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__LeaseTimeToLiveRequest req = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
    req.id = id;
    return run(e, OP_TTL, &req.base, cb, ud);
}

int sl_etcd_alarms(sl_etcd *e, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;
    req.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET;
    return run(e, OP_ALARM, &req.base, cb, ud);
}

int sl_etcd_lease_revoke(sl_etcd *e, int64_t id, sl_etcd_cb cb, void *ud)
{
    Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    req.id = id;
    return run(e, OP_REVOKE, &req.base, cb, ud);
}
