/*
 * request.c: the protocol's requests (proto/PROTOCOL.md), one function a message type,
 * found through a table by the decoded type. This is the protocol edge: the only place
 * where SL_E* codes become the protocol's string error codes.
 *
 * A request changes its space at once; the events it causes come out at the next tick. A
 * client may change only the entities its session added (the owner map says whose an
 * entity is). A request that fails gets one error frame; a request that carried a `rid`
 * and succeeded gets `ok`. A `moves` frame applies every good item and names each bad one
 * in an error of its own (its items go to the engine as one batch).
 *
 * To add a request type: a value in sl_msg_type and its decoding (proto/codec.c), a
 * function here and its line in `handlers`, and its section in PROTOCOL.md.
 */
#include "server/server_impl.h"

#include "base/clock.h"

#include <math.h>
#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* One request being handled. */
typedef struct req {
    sl_server *srv;
    sl_conn *c;
    session *s;
    const sl_msg *m;
} req;

static void reply_error(sl_server *srv, sl_conn *c, const sl_msg *m, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reply_error(sl_server *srv, sl_conn *c, const sl_msg *m, const char *code,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_enc_error(sl_conn_out(c), m && m->has_rid, m ? m->rid : 0, code, msg);
    srv->errors_sent++;
}

/* The protocol's code for an engine error on an entity. */
static const char *entity_code(int rc)
{
    return rc == SL_EEXIST ? "exists" : rc == SL_ENOENT ? "no_entity"
         : rc == SL_ENOMEM ? "internal" : "bad_value";
}

const char *sl__create_code(int rc)
{
    return rc == SL_EEXIST ? "space_exists" : rc == SL_ELIMIT ? "limit"
         : rc == SL_ENOMEM ? "internal" : rc == SL_ENOEXEC ? "scripts" : "bad_value";
}

/* Replies to a failed space operation with the space's own message. */
static void reply_space_error(const req *r, const hosted_space *sp, int rc)
{
    reply_error(r->srv, r->c, r->m, entity_code(rc), "%s", sl_space_error(sp->s));
}

/* ok, when the request had a rid; a request on space sp also learns the number of the tick
 * whose frame will carry the change's events (the space's next tick). */
static void reply_ok(const req *r, const hosted_space *sp)
{
    if (!r->m->has_rid)
        return;
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(r->c));
    sl_enc_map(&e, sp ? 3 : 2);
    sl_enc_kv_str(&e, "t", "ok");
    sl_enc_kv_u64(&e, "rid", r->m->rid);
    if (sp)
        sl_enc_kv_u64(&e, "tick", sp->ticks + 1);
    sl_enc_end(&e);
}

/* The space the request names, when this node serves it now; else replies moved (another
 * node serves it), not_owner (none does right now) or no_space. */
static hosted_space *named_space(const req *r)
{
    hosted_space *sp = sl__space_find(r->srv, r->m->space.p, r->m->space.n);
    if (sp && sl__serving(r->srv, sp, sl_now_ms()) && !sp->handoff)
        return sp;
    if (!sl__reply_not_here(r->srv, r->c, r->m, r->m->space.p, r->m->space.n))
        reply_error(r->srv, r->c, r->m, "no_space", "no space %.*s", (int)r->m->space.n,
                    r->m->space.p);
    return NULL;
}

/* The space, when the session owns entity e in it; replies on failure. */
static hosted_space *owned_target(const req *r, uint64_t e)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return NULL;
    uint32_t owner = sl_idmap_get(&sp->owners, e);
    const char *name = sl_msg_name(r->m->type);
    if (owner == UINT32_MAX) {
        reply_error(r->srv, r->c, r->m, "no_entity", "%s %llu: no such entity", name,
                    (unsigned long long)e);
        return NULL;
    }
    if (owner != r->s->idx + 1) {
        reply_error(r->srv, r->c, r->m, "foreign", "%s %llu: the entity belongs to another "
                    "client", name, (unsigned long long)e);
        return NULL;
    }
    return sp;
}

#define MAX_KEY 127u                    /* bytes of a prop key */

/* Checks every prop of an add or props request before anything changes; false (answered)
 * when one is malformed, so that a refused request changes nothing. */
static bool check_props(const req *r)
{
    const sl_msg *m = r->m;
    for (uint32_t i = 0; i < m->n; i++) {
        sl_str k;
        sl_value v;
        if (!sl_msg_prop_at(m, i, &k, &v)) {
            reply_error(r->srv, r->c, m, "bad_message", "props: keys must be strings, values "
                        "nil, booleans, numbers or strings");
            return false;
        }
        if (k.n == 0 || k.n > MAX_KEY || memchr(k.p, '\0', k.n)) {
            reply_error(r->srv, r->c, m, "bad_value", "props: keys are 1 to %u bytes, without "
                        "NUL", MAX_KEY);
            return false;
        }
    }
    return true;
}

/* A copy of an entity's props (to put them back when a request fails half-way). */
typedef struct prop_copy {
    sl_vec keys;                /* size_t offsets into text, one a prop */
    sl_vec values;              /* sl_value (strings as offsets into text, in .s) */
    sl_vec text;                /* chars: the keys and string values, NUL-terminated */
} prop_copy;

static void copy_one(void *ud, const char *key, const sl_value *v)
{
    prop_copy *pc = ud;
    size_t k = sl_vec_append(&pc->text, key, 1, strlen(key) + 1);
    sl_value c = *v;
    if (v->type == SL_VALUE_STRING)
        c.s = (const char *)(uintptr_t)sl_vec_append(&pc->text, v->s, 1, v->len);
    size_t *kp = k == SIZE_MAX ? NULL : sl_vec_push(&pc->keys, sizeof *kp);
    sl_value *vp = kp ? sl_vec_push(&pc->values, sizeof *vp) : NULL;
    if (vp) {
        *kp = k;
        *vp = c;
    } else if (kp) {
        pc->keys.n--;
    }
}

/* Puts key of entity e back as the copy has it (absent: cleared). */
static void put_back(hosted_space *sp, uint64_t e, const prop_copy *pc, const char *key)
{
    const char *text = pc->text.p;
    const size_t *k = pc->keys.p;
    sl_value v = {.type = SL_VALUE_NIL};
    for (size_t i = 0; i < pc->keys.n; i++) {
        if (strcmp(text + k[i], key))
            continue;
        v = ((const sl_value *)pc->values.p)[i];
        if (v.type == SL_VALUE_STRING)
            v.s = text + (uintptr_t)v.s;
        break;
    }
    sl_lua_set_prop(sp->h, e, key, &v);
}

/* The message of a refused prop: for a limit, which one and its flag. */
static int prop_failed(const req *r, hosted_space *sp, const char *key, int rc, char *err,
                       size_t errlen)
{
    const sl_server_config *cfg = &r->srv->cfg;
    unsigned long long e = r->m->e;
    if (rc != SL_ELIMIT)
        return sl_fail(err, errlen, rc, "props %llu %s: %s", e, key, sl_strerror(rc));
    const char *which = sl_lua_prop_limit(sp->h);
    if (!strcmp(which, "props"))
        return sl_fail(err, errlen, rc, "props %llu %s: an entity holds at most %u props "
                       "(--max-entity-props)", e, key, cfg->max_entity_props);
    if (!strcmp(which, "bytes"))
        return sl_fail(err, errlen, rc, "props %llu %s: an entity's props hold at most %u "
                       "bytes (--max-entity-prop-bytes)", e, key, cfg->max_entity_prop_bytes);
    return sl_fail(err, errlen, rc, "props %llu %s: a space holds at most %u distinct prop "
                   "keys (--max-prop-keys)", e, key, cfg->max_prop_keys);
}

/* The key of prop i of the request, NUL-terminated in key. */
static void prop_key(const sl_msg *m, uint32_t i, char *key, sl_value *v)
{
    sl_str k;
    sl_msg_prop_at(m, i, &k, v);
    memcpy(key, k.p, k.n);
    key[k.n] = '\0';
}

/* The protocol's code for a refused prop (apply_props' codes). */
static const char *prop_code(int rc)
{
    return rc == SL_ELIMIT ? "limit" : rc == SL_ENOENT ? "no_entity" : "internal";
}

/* Sets the props of a checked request, all or none (without scripts they have no reader and
 * are dropped); 0, or the failure's SL_E* code with its message in err. A request of
 * several props keeps a copy of the entity's props to put back the ones it had set. */
static int apply_props(const req *r, hosted_space *sp, char *err, size_t errlen)
{
    const sl_msg *m = r->m;
    if (!sp->h)
        return 0;
    prop_copy pc = {0};
    if (m->n > 1)
        sl_lua_props_each(sp->h, m->e, copy_one, &pc);
    int rc = 0;
    char key[MAX_KEY + 1];
    sl_value v;
    uint32_t done = 0;
    for (; done < m->n && !rc; done++) {
        prop_key(m, done, key, &v);
        if ((rc = sl_lua_set_prop(sp->h, m->e, key, &v)))
            rc = prop_failed(r, sp, key, rc, err, errlen);
    }
    for (uint32_t i = 0; rc && i + 1 < done; i++) {
        prop_key(m, i, key, &v);
        put_back(sp, m->e, &pc, key);
    }
    for (uint32_t i = 0; !rc && i < m->n; i++) {
        prop_key(m, i, key, &v);
        sl__rec_prop(r->srv, sp, m->e, key, &v);
    }
    sl_vec_free(&pc.keys);
    sl_vec_free(&pc.values);
    sl_vec_free(&pc.text);
    return rc;
}

/* A hello on a session's connection: the session exists already. */
static void on_hello(const req *r)
{
    reply_error(r->srv, r->c, r->m, "bad_message", "hello: already said");
}

/* ping: pong, echoing the rid (a client's way to measure round trips). */
static void on_ping(const req *r)
{
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(r->c));
    sl_enc_map(&e, r->m->has_rid ? 2 : 1);
    sl_enc_kv_str(&e, "t", "pong");
    if (r->m->has_rid)
        sl_enc_kv_u64(&e, "rid", r->m->rid);
    sl_enc_end(&e);
}

/* space.create: a space running the server's scripts, the session's to drop (unless the
 * operator keeps clients from creating spaces); its options are checked by the engine
 * (sl_space_new), whose message goes back to the client. */
static void on_space_create(const req *r)
{
    const sl_msg *m = r->m;
    if (r->srv->cfg.no_client_spaces) {
        reply_error(r->srv, r->c, m, "forbidden", "space.create: this server does not let "
                    "clients create spaces (--client-spaces off)");
        return;
    }
    if (sl__remote_find(r->srv, m->space.p, m->space.n)) {
        reply_error(r->srv, r->c, m, "space_exists", "space.create: %.*s is a space of the "
                    "cluster (served by another node: ask where)", (int)m->space.n,
                    m->space.p);
        return;
    }
    if (r->s->spaces >= r->srv->cfg.max_session_spaces) {
        reply_error(r->srv, r->c, m, "limit", "space.create: a session creates at most %u "
                    "spaces (--max-session-spaces)", r->srv->cfg.max_session_spaces);
        return;
    }
    sl_space_config cfg = {.width = m->w, .height = m->h, .cell = m->cell,
                           .hysteresis = m->hyst, .stay = m->stay, .index = SL_INDEX_AUTO,
                           .reasons = m->reasons, .depth = m->depth};
    if (m->index.n) {
        char kind[16] = "";
        snprintf(kind, sizeof kind, "%.*s", (int)(m->index.n < 15 ? m->index.n : 15),
                 m->index.p);
        if (sl_index_kind_parse(kind, &cfg.index)) {
            reply_error(r->srv, r->c, m, "bad_value",
                        "space.create: index must be grid, quadtree or auto");
            return;
        }
    }
    if (m->order.n) {
        char order[8] = "";
        snprintf(order, sizeof order, "%.*s", (int)(m->order.n < 7 ? m->order.n : 7),
                 m->order.p);
        if (strlen(order) != m->order.n || sl_event_order_parse(order, &cfg.order)) {
            reply_error(r->srv, r->c, m, "bad_value", "space.create: order must be id or tick");
            return;
        }
    }
    char msg[512];
    int rc = sl_server_create_space(r->srv, m->space.p, m->space.n, &cfg, r->srv->cfg.scripts,
                                    r->s->serial, msg, sizeof msg);
    if (!rc) {
        r->s->spaces++;
        reply_ok(r, sl__space_find(r->srv, r->m->space.p, r->m->space.n));
        return;
    }
    reply_error(r->srv, r->c, m, sl__create_code(rc), "space.create: %s", msg);
}

/* space.drop: only by the session that created the space; the space and every entity in it
 * go at once (every session with entities there is told, see sl__space_drop). */
static void on_space_drop(const req *r)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    if (sp->creator != r->s->serial) {
        reply_error(r->srv, r->c, r->m, "forbidden", "space.drop: space %s was created by %s",
                    sp->name, sp->creator == SL_CREATOR_OPERATOR ? "the operator"
                    : sp->creator == SL_CREATOR_CLUSTER ? "the cluster (etcd)"
                    : "another client");
        return;
    }
    sl__space_drop(r->srv, sp);
    reply_ok(r, NULL);
}

/* Adds one entity for the session (it owns it from now on, and remembers it for its
 * expiry): NULL, or the protocol's error code with the reason in err. An add that cannot be
 * recorded as the session's is undone, so no entity is left ownerless. */
static const char *add_entity(const req *r, hosted_space *sp, uint64_t e, float x, float y,
                              float z, float rad, uint32_t layer, uint32_t mask, char *err,
                              size_t len)
{
    if (r->s->live >= r->srv->cfg.max_session_entities) {
        snprintf(err, len, "a session owns at most %u entities (--max-session-entities)",
                 r->srv->cfg.max_session_entities);
        return "limit";
    }
    /* (absent z: 0, which sl_space_add gives in either kind of space) */
    int rc = isnan(z) ? sl_space_add(sp->s, e, x, y, rad, layer, mask)
                      : sl_space_add3(sp->s, e, x, y, z, rad, layer, mask);
    if (rc) {
        snprintf(err, len, "%s", sl_space_error(sp->s));
        return entity_code(rc);
    }
    owned *o = sl_vec_push(&r->s->owned, sizeof *o);
    if (!o || sl_idmap_put(&sp->owners, NULL, e, r->s->idx + 1)) {
        if (o)
            r->s->owned.n--;
        sl_space_remove(sp->s, e);
        snprintf(err, len, "out of memory");
        return "internal";
    }
    *o = (owned){sp->serial, e};
    r->s->live++;
    if (sp->h)
        sl_lua_added(sp->h, e);     /* (props set with it come before its on_add runs) */
    sl__rec_add(r->srv, sp, e, x, y, isnan(z) ? 0 : z, rad, layer, mask);
    sl__rec_owner(r->srv, sp, e);
    return NULL;
}

/* add: one entity, with its props (all or nothing). */
static void on_add(const req *r)
{
    const sl_msg *m = r->m;
    hosted_space *sp = named_space(r);
    if (!sp || (m->props && !check_props(r)))
        return;
    char err[256];
    const char *code = add_entity(r, sp, m->e, m->x, m->y, m->z, m->r, m->layer, m->mask,
                                  err, sizeof err);
    if (code) {
        reply_error(r->srv, r->c, m, code, "add: %s", err);
        return;
    }
    int rc = apply_props(r, sp, err, sizeof err);
    if (rc) {
        sl__space_remove_entity(r->srv, sp, m->e);     /* all or nothing */
        reply_error(r->srv, r->c, m, prop_code(rc), "add: %s", err);
        return;
    }
    reply_ok(r, sp);
}

/* move: one entity; `moves` is the batched form clients should prefer. */
static void on_move(const req *r)
{
    const sl_msg *m = r->m;
    hosted_space *sp = owned_target(r, m->e);
    if (!sp)
        return;
    r->srv->moves++;
    int rc = isnan(m->z) ? sl_space_move(sp->s, m->e, m->x, m->y)
                         : sl_space_move3(sp->s, m->e, m->x, m->y, m->z);
    if (rc) {
        reply_space_error(r, sp, rc);
        return;
    }
    sl__rec_move(r->srv, sp, m->e, m->x, m->y, m->z);
    reply_ok(r, sp);
}

/* A moves frame's batch in sl_space_move_many: failures are collected, and marked in the
 * item numbers (MOVE_FAILED) so that a recording leaves them out. The frame gets one
 * answer: ok, or one bad_items error that lists the first MAX_LISTED failures. */
#define MOVE_FAILED 0x80000000u
#define MAX_LISTED 100u

typedef struct item_failure {
    uint32_t item;
    const char *code;           /* static */
    size_t msg;                 /* offset of its message in srv->fail_text */
} item_failure;

static void item_failed(sl_server *srv, uint32_t item, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Keeps a refused item (item, code, message) to be listed, if it is among the first
 * MAX_LISTED. */
static void item_failed(sl_server *srv, uint32_t item, const char *code, const char *fmt, ...)
{
    if (srv->fails.n >= MAX_LISTED)
        return;                 /* (the caller counts every failure) */
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t off = sl_vec_append(&srv->fail_text, msg, 1, strlen(msg) + 1);
    item_failure *f = off == SIZE_MAX ? NULL : sl_vec_push(&srv->fails, sizeof *f);
    if (f)
        *f = (item_failure){item, code, off};
}

static int by_item(const void *a, const void *b)
{
    uint32_t x = ((const item_failure *)a)->item, y = ((const item_failure *)b)->item;
    return (x > y) - (x < y);
}

/* The one answer of a moves frame with refused items (PROTOCOL.md: bad_items). */
static void reply_items(const req *r, uint32_t failed)
{
    sl_server *srv = r->srv;
    size_t listed = srv->fails.n;
    item_failure *f = srv->fails.p;
    if (listed)
        qsort(f, listed, sizeof *f, by_item);
    char msg[128];
    snprintf(msg, sizeof msg, "%s: %u of %u items refused (the others applied)",
             sl_msg_name(r->m->type), failed, r->m->n);
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(r->c));
    sl_enc_map(&e, r->m->has_rid ? 6 : 5);
    sl_enc_kv_str(&e, "t", "error");
    if (r->m->has_rid)
        sl_enc_kv_u64(&e, "rid", r->m->rid);
    sl_enc_kv_str(&e, "code", "bad_items");
    sl_enc_kv_str(&e, "msg", msg);
    sl_enc_kv_u64(&e, "failed", failed);
    sl_enc_str(&e, "items");
    sl_enc_array(&e, (uint32_t)listed);
    const char *text = srv->fail_text.p;
    for (size_t i = 0; i < listed; i++) {
        sl_enc_array(&e, 3);
        sl_enc_u64(&e, f[i].item);
        sl_enc_str(&e, f[i].code);
        sl_enc_str(&e, text + f[i].msg);
    }
    sl_enc_end(&e);
    srv->errors_sent++;
}

typedef struct moves_ctx {
    const req *r;
    hosted_space *sp;
} moves_ctx;

static void move_failed(void *ud, size_t i, int code)
{
    moves_ctx *mc = ud;
    uint32_t *item = mc->r->srv->batch_item.p;
    item_failed(mc->r->srv, item[i], entity_code(code), "%s", sl_space_error(mc->sp->s));
    item[i] |= MOVE_FAILED;
}

/* Puts the items that decode and name the session's own entities into the server's batch;
 * counts the others as failed. Returns how many failed. */
static uint32_t gather_moves(const req *r, hosted_space *sp)
{
    const sl_msg *m = r->m;
    sl_server *srv = r->srv;
    uint32_t failed = 0;
    srv->batch.n = srv->batch_item.n = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t e;
        float x, y, z;
        if (i + 8 < m->n && sl_msg_move_at(m, i + 8, &e, &x, &y))
            sl_idmap_prefetch(&sp->owners, e);
        if (!sl_msg_move_at(m, i, &e, &x, &y) || !sl_msg_z_at(m, i, &z)) {
            item_failed(srv, i, "bad_message", "e must be an unsigned integer, x and y numbers "
                        "(and z a number or nil)");
            failed++;
            continue;
        }
        uint32_t owner = sl_idmap_get(&sp->owners, e);
        if (owner != r->s->idx + 1) {
            bool unknown = owner == UINT32_MAX;
            item_failed(srv, i, unknown ? "no_entity" : "foreign", "entity %llu is %s",
                        (unsigned long long)e, unknown ? "unknown" : "another client's");
            failed++;
            continue;
        }
        sl_move *mv = sl_vec_push(&srv->batch, sizeof *mv);
        uint32_t *item = mv ? sl_vec_push(&srv->batch_item, sizeof *item) : NULL;
        if (!item) {
            if (mv)
                srv->batch.n--;     /* the two vectors stay the same length */
            item_failed(srv, i, "internal", "out of memory");
            failed++;
            continue;
        }
        *mv = (sl_move){e, x, y, z};        /* (z NaN: kept) */
        *item = i;
    }
    return failed;
}

/* moves: one batch into the engine; the recording gets the moves that applied, in order. */
static void on_moves(const req *r)
{
    sl_server *srv = r->srv;
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    srv->fails.n = srv->fail_text.n = 0;
    uint32_t failed = gather_moves(r, sp);
    moves_ctx mc = {r, sp};
    failed += (uint32_t)sl_space_move_many(sp->s, srv->batch.p, srv->batch.n, move_failed, &mc);
    if (srv->rec) {
        const sl_move *mv = srv->batch.p;
        const uint32_t *item = srv->batch_item.p;
        for (size_t i = 0; i < srv->batch.n; i++)
            if (!(item[i] & MOVE_FAILED))
                sl__rec_move(srv, sp, mv[i].id, mv[i].x, mv[i].y, mv[i].z);
    }
    srv->moves += r->m->n - failed;
    if (failed)
        reply_items(r, failed);
    else
        reply_ok(r, sp);
}

/* adds: many entities in one frame (no props), each added as by `add`; one answer, like
 * moves: ok, or bad_items naming the refused ones (the others were added). */
static void on_adds(const req *r)
{
    sl_server *srv = r->srv;
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    srv->fails.n = srv->fail_text.n = 0;
    uint32_t failed = 0;
    for (uint32_t i = 0; i < r->m->n; i++) {
        uint64_t e;
        float x, y, z, rad;
        uint32_t layer, mask;
        char err[256];
        const char *code = "bad_message";
        if (!sl_msg_add_at(r->m, i, &e, &x, &y, &rad, &layer, &mask) ||
            !sl_msg_z_at(r->m, i, &z))
            snprintf(err, sizeof err, "e must be an unsigned integer, x, y and r numbers, "
                     "layer and mask unsigned 32-bit integers, z a number or nil");
        else
            code = add_entity(r, sp, e, x, y, z, rad, layer, mask, err, sizeof err);
        if (code) {
            item_failed(srv, i, code, "%s", err);
            failed++;
        }
    }
    if (failed)
        reply_items(r, failed);
    else
        reply_ok(r, sp);
}

/* radius, layer, mask, hysteresis, always, cap, priority and group: one value of one of the
 * session's entities. */
static void on_shape(const req *r)
{
    const sl_msg *m = r->m;
    hosted_space *sp = owned_target(r, m->e);
    if (!sp)
        return;
    int rc = m->type == SL_MSG_RADIUS ? sl_space_set_radius(sp->s, m->e, m->r)
           : m->type == SL_MSG_LAYER ? sl_space_set_layer(sp->s, m->e, m->layer)
           : m->type == SL_MSG_HYSTERESIS ? sl_space_set_hysteresis(sp->s, m->e, m->hyst)
           : m->type == SL_MSG_ALWAYS ? sl_space_set_always(sp->s, m->e, m->on)
           : m->type == SL_MSG_CAP ? sl_space_set_cap(sp->s, m->e, m->cap, m->margin)
           : m->type == SL_MSG_PRIORITY ? sl_space_set_priority(sp->s, m->e, m->priority)
           : m->type == SL_MSG_GROUP ? sl_space_set_group(sp->s, m->e, m->group)
           : sl_space_set_mask(sp->s, m->e, m->mask);
    if (rc) {
        reply_space_error(r, sp, rc);
        return;
    }
    unsigned long long e = m->e;
    if (m->type == SL_MSG_RADIUS)
        sl__rec(r->srv, sp, "radius %llu %.9g\n", e, (double)m->r);
    else if (m->type == SL_MSG_LAYER)
        sl__rec(r->srv, sp, "layer %llu %u\n", e, m->layer);
    else if (m->type == SL_MSG_HYSTERESIS)
        sl__rec(r->srv, sp, "hysteresis %llu %.9g\n", e, (double)m->hyst);
    else if (m->type == SL_MSG_ALWAYS)
        sl__rec(r->srv, sp, "always %llu %s\n", e, m->on ? "on" : "off");
    else if (m->type == SL_MSG_CAP)
        sl__rec(r->srv, sp, "cap %llu %u %.9g\n", e, m->cap, (double)m->margin);
    else if (m->type == SL_MSG_PRIORITY)
        sl__rec(r->srv, sp, "priority %llu %d\n", e, m->priority);
    else if (m->type == SL_MSG_GROUP)
        sl__rec(r->srv, sp, "group %llu %u\n", e, m->group);
    else
        sl__rec(r->srv, sp, "mask %llu 0x%x\n", e, m->mask);
    reply_ok(r, sp);
}

/* lod: one of the session's entities' update rates by distance ([distance, period, ...];
 * empty: none). */
static void on_lod(const req *r)
{
    const sl_msg *m = r->m;
    hosted_space *sp = owned_target(r, m->e);
    if (!sp)
        return;
    const msgpack_object *a = m->bands;
    uint32_t n = a->via.array.size / 2;
    sl_lod_band b[SL_LOD_BANDS];
    bool ok = a->via.array.size % 2 == 0 && n <= SL_LOD_BANDS;
    for (uint32_t i = 0; ok && i < n; i++) {
        uint64_t k;
        ok = sl_obj_f32(&a->via.array.ptr[2 * i], &b[i].distance) &&
             sl_obj_u64(&a->via.array.ptr[2 * i + 1], &k) && k <= UINT32_MAX;
        b[i].period = ok ? (uint32_t)k : 0;
    }
    if (!ok) {
        reply_error(r->srv, r->c, m, "bad_value", "lod: bands is [distance, period, ...]: at "
                    "most %d pairs of a number and an unsigned integer", SL_LOD_BANDS);
        return;
    }
    int rc = sl_space_set_lod(sp->s, m->e, b, n);
    if (rc) {
        reply_space_error(r, sp, rc);
        return;
    }
    sl__rec_lod(r->srv, sp, m->e, b, n);
    reply_ok(r, sp);
}

/* relate: a relation of a pair whose watcher is one of the session's entities (the target
 * may be anyone's). */
static void on_relate(const req *r)
{
    const sl_msg *m = r->m;
    hosted_space *sp = owned_target(r, m->e);
    if (!sp)
        return;
    char word[8] = "";
    sl_relation k;
    if (m->rel.n < sizeof word)
        memcpy(word, m->rel.p, m->rel.n);
    if (m->rel.n >= sizeof word || !sl_relation_parse(word, &k)) {
        reply_error(r->srv, r->c, m, "bad_value", "relate: rel is \"force\", \"never\" or "
                    "\"none\"");
        return;
    }
    int rc = sl_space_relate(sp->s, m->e, m->target, k);
    if (rc) {
        reply_space_error(r, sp, rc);
        return;
    }
    sl__rec(r->srv, sp, "relate %llu %llu %s\n", (unsigned long long)m->e,
            (unsigned long long)m->target, word);
    reply_ok(r, sp);
}

/* subscribe / unsubscribe: the session gets (or no longer gets) the group events of a vision
 * group of the space in its tick frames. */
static void on_subscribe(const req *r)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    if (!r->m->group) {
        reply_error(r->srv, r->c, r->m, "bad_value", "%s: group is 1..4294967295",
                    sl_msg_name(r->m->type));
        return;
    }
    if (sl__group_subscribe(sp, r->s, r->m->group, r->m->type == SL_MSG_SUBSCRIBE)) {
        reply_error(r->srv, r->c, r->m, "internal", "out of memory");
        return;
    }
    reply_ok(r, sp);
}

/* props: set or clear (nil) props of one of the session's entities; without scripts the
 * props have no reader and are dropped. */
static void on_props(const req *r)
{
    hosted_space *sp = owned_target(r, r->m->e);
    if (!sp || !check_props(r))
        return;
    char err[256];
    int rc = apply_props(r, sp, err, sizeof err);
    if (rc)
        reply_error(r->srv, r->c, r->m, prop_code(rc), "%s", err);
    else
        reply_ok(r, sp);
}

/* remove: the entity leaves for good; its watchers get their leaves at the next tick. */
static void on_remove(const req *r)
{
    hosted_space *sp = owned_target(r, r->m->e);
    if (!sp)
        return;
    int rc = sl__space_remove_entity(r->srv, sp, r->m->e);
    if (rc) {
        reply_space_error(r, sp, rc);
        return;
    }
    reply_ok(r, sp);
}

/* where: which node serves a space (this one: its own address). */
/* query: who is in a circle or a rectangle of the space now (sl_space_query), at most
 * QUERY_MAX hits a reply (`more` says when there were more). */
#define QUERY_MAX 10000u
/* region: a region of the session's (a new one, or one of its own reshaped). */
static void on_region(const req *r)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    const sl_msg *m = r->m;
    uint32_t owner = sl_idmap_get(&sp->region_owners, m->region);
    sl_region g;
    if (sl_space_get_region(sp->s, m->region, &g, NULL) == 0 && owner != r->s->idx + 1) {
        reply_error(r->srv, r->c, m, "foreign", "region %llu belongs to another client",
                    (unsigned long long)m->region);
        return;
    }
    if (owner != r->s->idx + 1 && !sl__session_regions_room(r->srv, r->s)) {
        reply_error(r->srv, r->c, m, "limit", "region: a session owns at most %u regions "
                    "(--max-session-regions)", r->srv->cfg.max_session_regions);
        return;
    }
    float xy[2 * SL_REGION_VERTICES];
    g = (sl_region){.x = m->x, .y = m->y, .r = m->r, .x1 = m->x1, .y1 = m->y1, .xy = xy,
                    .mask = m->mask};
    const msgpack_object *v = m->xy;
    bool ok = true;
    if (sl_str_is(m->shape, "circle")) {
        g.kind = SL_REGION_CIRCLE;
        ok = !isnan(m->x) && !isnan(m->y) && !isnan(m->r);
    } else if (sl_str_is(m->shape, "rect")) {
        g.kind = SL_REGION_RECT;
        ok = !isnan(m->x) && !isnan(m->y) && !isnan(m->x1) && !isnan(m->y1);
    } else if (sl_str_is(m->shape, "poly")) {
        g.kind = SL_REGION_POLYGON;
        ok = v && v->via.array.size % 2 == 0 && v->via.array.size <= 2 * SL_REGION_VERTICES;
        g.n = ok ? v->via.array.size / 2 : 0;
        for (uint32_t i = 0; ok && i < 2 * g.n; i++)
            ok = sl_obj_f32(&v->via.array.ptr[i], &xy[i]);
    } else {
        reply_error(r->srv, r->c, m, "bad_value", "region: shape must be circle, rect or poly");
        return;
    }
    if (!ok) {
        reply_error(r->srv, r->c, m, "bad_message", "region: a circle needs x, y and r, a "
                    "rect x, y, x1 and y1, a poly xy (an array of 2N numbers, N <= %d)",
                    SL_REGION_VERTICES);
        return;
    }
    int rc = sl__space_set_region(r->srv, sp, m->region, &g, r->s->idx + 1);
    if (rc) {
        reply_error(r->srv, r->c, m, rc == SL_ENOMEM ? "internal"
                                     : rc == SL_ELIMIT ? "limit" : "bad_value", "%s",
                    rc == SL_ENOMEM ? "out of memory" : sl_space_error(sp->s));
        return;
    }
    owned *o = owner == r->s->idx + 1 ? NULL : sl_vec_push(&r->s->regions, sizeof *o);
    if (o)
        *o = (owned){sp->serial, m->region};
    reply_ok(r, sp);
}

/* unregion: one of the session's regions goes. */
static void on_unregion(const req *r)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    uint32_t owner = sl_idmap_get(&sp->region_owners, r->m->region);
    sl_region g;
    if (sl_space_get_region(sp->s, r->m->region, &g, NULL)) {
        reply_error(r->srv, r->c, r->m, "no_region", "no region %llu",
                    (unsigned long long)r->m->region);
        return;
    }
    if (owner != r->s->idx + 1) {
        reply_error(r->srv, r->c, r->m, "foreign", "region %llu belongs to another client",
                    (unsigned long long)r->m->region);
        return;
    }
    sl__space_remove_region(r->srv, sp, r->m->region);
    owned *o = r->s->regions.p;         /* (off the session's list) */
    for (size_t i = 0; i < r->s->regions.n; i++) {
        if (o[i].serial == sp->serial && o[i].id == r->m->region) {
            o[i] = o[--r->s->regions.n];
            break;
        }
    }
    reply_ok(r, sp);
}

static void on_query(const req *r)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    const sl_msg *m = r->m;
    bool rect = !isnan(m->x1) || !isnan(m->y1);
    if (rect == !isnan(m->r)) {
        reply_error(r->srv, r->c, m, "bad_message", "query: give r (a circle), or x1 and y1 "
                    "(a rectangle), not both");
        return;
    }
    /* 3D: z with a circle (a sphere), z and z1 with a rectangle (a box); the engine refuses
     * them in a flat space. */
    bool d3 = !isnan(m->z) || !isnan(m->z1);
    if (d3 && (isnan(m->z) || rect == isnan(m->z1))) {
        reply_error(r->srv, r->c, m, "bad_message", "query: a sphere takes z with r, a box z "
                    "and z1 with x1 and y1");
        return;
    }
    uint32_t limit = m->limit && m->limit <= QUERY_MAX ? m->limit : QUERY_MAX;
    sl_query q = {m->x, m->y, m->r, m->x1, m->y1, rect, m->mask, limit + 1, d3,
                  d3 ? m->z : 0, rect && d3 ? m->z1 : 0};
    const sl_query_hit *h;
    size_t n;
    if (sl_space_query(sp->s, &q, &h, &n)) {
        reply_error(r->srv, r->c, m, "bad_value", "%s", sl_space_error(sp->s));
        return;
    }
    bool more = n > limit && (!m->limit || m->limit > QUERY_MAX);
    n = n > limit ? limit : n;
    sl_enc e;
    bool deep = sl_space_config_of(sp->s)->depth > 0;
    sl_enc_begin(&e, sl_conn_out(r->c));
    sl_enc_map(&e, 4 + m->has_rid + deep);
    sl_enc_kv_str(&e, "t", "query");
    if (m->has_rid)
        sl_enc_kv_u64(&e, "rid", m->rid);
    sl_enc_kv_str(&e, "space", sp->name);
    sl_enc_str(&e, "hits");
    sl_enc_array(&e, (uint32_t)(3 * n));
    for (size_t i = 0; i < n; i++) {
        sl_enc_u64(&e, h[i].id);
        sl_enc_f32(&e, h[i].x);
        sl_enc_f32(&e, h[i].y);
    }
    if (deep) {             /* (3D spaces: the hits' heights, in their order) */
        sl_enc_str(&e, "hits_z");
        sl_enc_array(&e, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            sl_enc_f32(&e, h[i].z);
    }
    sl_enc_str(&e, "more");
    sl_enc_bool(&e, more);
    sl_enc_end(&e);
}

static void on_where(const req *r)
{
    hosted_space *sp = named_space(r);
    if (!sp)
        return;
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(r->c));
    sl_enc_map(&e, 5 + r->m->has_rid);
    sl_enc_kv_str(&e, "t", "where");
    if (r->m->has_rid)
        sl_enc_kv_u64(&e, "rid", r->m->rid);
    sl_enc_kv_str(&e, "space", sp->name);
    sl_enc_kv_str(&e, "node", r->srv->node_id);
    sl_enc_kv_str(&e, "owner", r->srv->advertise);
    sl_enc_kv_u64(&e, "epoch", sp->epoch);
    sl_enc_end(&e);
}

/* claim: the entities in a space of a session a handoff parked here (its client's session
 * on the space's old owner) become this session's; its held tick frames of the space come
 * first. */
static void on_claim(const req *r)
{
    const sl_msg *m = r->m;
    if (!m->session.n) {
        reply_error(r->srv, r->c, m, "bad_message", "claim: missing field session");
        return;
    }
    hosted_space *sp = sl__space_find(r->srv, m->space.p, m->space.n);
    if (!sp || sl__session_claim(r->srv, r->s, m->session.p, m->session.n, sp)) {
        if (sl__handoff_has_token(r->srv, m->session.p, m->session.n))
            reply_error(r->srv, r->c, m, "not_owner", "claim: the space that session comes "
                        "with is not served here yet (its move is being committed): retry");
        else
            reply_error(r->srv, r->c, m, "no_session", "claim: no session of that token "
                        "waits here (expired, claimed, connected, or never moved here)");
        return;
    }
    reply_ok(r, NULL);
}

/* What each message type does once the client has said hello. */
static void (*const handlers[SL_MSG_COUNT])(const req *r) = {
    [SL_MSG_HELLO] = on_hello,
    [SL_MSG_PING] = on_ping,
    [SL_MSG_SPACE_CREATE] = on_space_create,
    [SL_MSG_SPACE_DROP] = on_space_drop,
    [SL_MSG_ADD] = on_add,
    [SL_MSG_MOVE] = on_move,
    [SL_MSG_MOVES] = on_moves,
    [SL_MSG_RADIUS] = on_shape,
    [SL_MSG_LAYER] = on_shape,
    [SL_MSG_MASK] = on_shape,
    [SL_MSG_HYSTERESIS] = on_shape,
    [SL_MSG_LOD] = on_lod,
    [SL_MSG_RELATE] = on_relate,
    [SL_MSG_ALWAYS] = on_shape,
    [SL_MSG_CAP] = on_shape,
    [SL_MSG_PRIORITY] = on_shape,
    [SL_MSG_GROUP] = on_shape,
    [SL_MSG_SUBSCRIBE] = on_subscribe,
    [SL_MSG_UNSUBSCRIBE] = on_subscribe,
    [SL_MSG_QUERY] = on_query,
    [SL_MSG_REGION] = on_region,
    [SL_MSG_UNREGION] = on_unregion,
    [SL_MSG_PROPS] = on_props,
    [SL_MSG_REMOVE] = on_remove,
    [SL_MSG_WHERE] = on_where,
    [SL_MSG_ADDS] = on_adds,
    [SL_MSG_CLAIM] = on_claim,
};

void sl__request(void *ud, sl_conn *c, const char *body, size_t len)
{
    sl_server *srv = ud;
    srv->frames_in++;
    sl_msg m;
    char err[256];
    sl_decode_rc rc = sl_decode(srv->dec, body, len, &m, err, sizeof err);
    if (rc == SL_DECODE_BAD_FRAME) {
        sl__log(srv, "%s: %s; closing", sl_conn_peer(c), err);
        sl_conn_close(c, "bad_frame", err);
        return;
    }
    session *s = sl_conn_data(c);
    if (sl__handoff_frame(srv, c, s, &m, rc))
        return;             /* another node's (handoff.c) */
    if (!s) {
        /* Before hello, anything but a good hello ends the connection, with the reason. */
        if (!m.typed || m.type != SL_MSG_HELLO)
            sl_conn_close_reply(c, &m, "not_hello", "the first message must be hello");
        else if (rc != SL_DECODE_OK)
            sl_conn_close_reply(c, &m, "bad_message", err);
        else
            sl__session_hello(srv, c, &m);
        return;
    }
    if (rc != SL_DECODE_OK) {
        reply_error(srv, c, &m, rc == SL_DECODE_UNKNOWN ? "unknown_type" : "bad_message", "%s",
                    err);
        return;
    }
    if (m.type >= SL_MSG_COUNT || !handlers[m.type]) {
        assert(!"every decoded type has a handler");
        reply_error(srv, c, &m, "unknown_type", "%s: not handled here", sl_msg_name(m.type));
        return;
    }
    handlers[m.type](&(req){srv, c, s, &m});
}
