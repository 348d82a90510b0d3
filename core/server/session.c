/*
 * session.c: client sessions. A client becomes a session with its hello; the session, not
 * the connection, owns the entities the client adds. When the connection drops, the
 * session is detached and its entities stay for the grace period (--grace-ms); a hello that
 * presents the session's token within it takes the session over, else the next tick
 * removes the entities, and their leaves go out as usual.
 *
 * Sessions live in an array by index (the owner maps store index + 1); an expired session's
 * slot is reused by the next new one.
 *
 * A token is the session's only credential (whoever presents it takes the session over and
 * can remove its entities), so it is 128 bits from the kernel's random source (getrandom
 * through uv_random), never derived from anything another client could see, and it is
 * compared in constant time. Without randomness a session is refused, not made weak.
 */
#include "server/server_impl.h"

#include "base/clock.h"

#include <assert.h>

#include <stdlib.h>
#include <string.h>

/* Fills token (33 bytes) with 32 hex digits of fresh kernel randomness; 0 or SL_EIO. */
static int new_token(char *token)
{
    unsigned char b[16];
    if (uv_random(NULL, NULL, b, sizeof b, 0, NULL))
        return SL_EIO;
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(token + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/* Whether a (n bytes) equals the token t, in a time that does not depend on where they
 * differ. */
static bool token_equal(const char *t, const char *a, size_t n)
{
    size_t len = strlen(t);
    unsigned char diff = n != len;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(t[i] ^ (i < n ? a[i] : 0));
    return diff == 0;
}

/* A fresh session (in a free slot if there is one), or NULL on OOM or without randomness. */
static session *session_new(sl_server *srv)
{
    char token[33];
    if (new_token(token))
        return NULL;
    uint32_t idx = UINT32_MAX;
    for (uint32_t i = 0; i < srv->nsessions; i++)
        if (!srv->sessions[i]->used)
            idx = i;
    if (idx == UINT32_MAX) {
        void *p = srv->sessions;
        if (sl_grow(NULL, &p, &srv->capsessions, srv->nsessions + 1, sizeof(session *)))
            return NULL;
        srv->sessions = p;
        session *s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        idx = srv->nsessions++;
        srv->sessions[idx] = s;
    }
    session *s = srv->sessions[idx];
    s->idx = idx;
    s->serial = ++srv->next_serial;
    s->used = true;
    s->conn = NULL;
    s->owned.n = 0;
    s->live = s->spaces = 0;
    assert(!s->dirty && !s->enter.n && !s->leave.n && !s->stay.n && !s->emits.n);
    memcpy(s->token, token, sizeof token);
    return s;
}

/* The session holding token (n bytes), or NULL. */
static session *session_by_token(const sl_server *srv, const char *token, size_t n)
{
    for (uint32_t i = 0; i < srv->nsessions; i++) {
        session *t = srv->sessions[i];
        if (t->used && token_equal(t->token, token, n))
            return t;
    }
    return NULL;
}

static void send_welcome(const sl_server *srv, sl_conn *c, const sl_msg *m, const session *s,
                         bool resumed)
{
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(c));
    sl_enc_map(&e, (m->has_rid ? 8 : 7) + srv->clustered);
    sl_enc_kv_str(&e, "t", "welcome");
    if (m->has_rid)
        sl_enc_kv_u64(&e, "rid", m->rid);
    sl_enc_kv_u64(&e, "v", SL_PROTO_VERSION);
    sl_enc_kv_str(&e, "session", s->token);
    sl_enc_str(&e, "resumed");
    sl_enc_bool(&e, resumed);
    sl_enc_str(&e, "tick_ms");
    sl_enc_f64(&e, srv->cfg.tick_ms);
    sl_enc_kv_u64(&e, "max_frame", srv->cfg.max_frame);
    sl_enc_str(&e, "idle_ms");
    sl_enc_f64(&e, srv->cfg.idle_ms);
    if (srv->clustered)
        sl__encode_nodes(srv, &e);
    sl_enc_end(&e);
}

void sl__session_hello(sl_server *srv, sl_conn *c, const sl_msg *m)
{
    if (m->version != SL_PROTO_VERSION) {
        char why[96];
        snprintf(why, sizeof why, "protocol version %u is not supported (this server: %u)",
                 m->version, SL_PROTO_VERSION);
        sl_conn_close_reply(c, m, "bad_version", why);
        return;
    }
    const char *token = srv->cfg.token;
    if (token && (m->token.n != strlen(token) || memcmp(m->token.p, token, m->token.n) != 0)) {
        sl_conn_close_reply(c, m, "bad_token", "hello: wrong or missing token");
        return;
    }
    session *s = NULL;
    bool resumed = m->session.n > 0;
    if (resumed) {
        if (!(s = session_by_token(srv, m->session.p, m->session.n))) {
            sl_conn_close_reply(c, m, "no_session", "hello: no such session (expired?)");
            return;
        }
        if (s->conn) {
            /* The old connection is still open (e.g. a half-dead socket): the newcomer
             * with the token wins. */
            sl_conn_set_data(s->conn, NULL);
            sl_conn_close(s->conn, "replaced", "another connection resumed this session");
        }
    } else if (!(s = session_new(srv))) {
        sl_conn_close_reply(c, m, "internal", "no session could be made (out of memory or randomness)");
        return;
    }
    s->conn = c;
    sl_conn_set_data(c, s);
    sl_conn_accept(c);
    send_welcome(srv, c, m, s, resumed);
}

void sl__session_detach(void *ud, sl_conn *c, const char *reason)
{
    const sl_server *srv = ud;
    session *s = sl_conn_data(c);
    if (s && s->conn == c) {
        s->conn = NULL;
        s->detached_ms = sl_now_ms();
        sl__log(srv, "%s: session %u detached (%s); its entities stay %.0f ms", sl_conn_peer(c),
                s->idx, reason, srv->cfg.grace_ms);
    }
}

void sl__session_disown(sl_server *srv, const hosted_space *sp, uint64_t id)
{
    uint32_t o = sl_idmap_get(&sp->owners, id);
    if (o == UINT32_MAX || o == STATIC_OWNER || o == 0 || o > srv->nsessions)
        return;
    session *s = srv->sessions[o - 1];
    assert(s->live > 0);
    s->live--;
    /* The list of what it added keeps removed entities until they are most of it; then it
     * keeps only what the session still owns, so it never grows past twice that. */
    if (s->owned.n < 2 * (size_t)s->live + 64)
        return;
    owned *ow = s->owned.p;
    size_t n = 0;
    const hosted_space *in = NULL;
    for (size_t i = 0; i < s->owned.n; i++) {
        if (!in || in->serial != ow[i].serial)
            in = sl__space_by_serial(srv, ow[i].serial);
        if (in && sl_idmap_get(&in->owners, ow[i].id) == s->idx + 1 &&
            !(in == sp && ow[i].id == id))
            ow[n++] = ow[i];
    }
    s->owned.n = n;
}

/* Removes every entity the session still owns (its grace period ran out). The session's
 * list may name entities removed since, or in dropped spaces: the owner map decides. */
static void session_expire(sl_server *srv, session *s)
{
    /* The list is taken out of the session while it is walked, so that the removals (which
     * prune a session's list) leave it alone. */
    sl_vec list = s->owned;
    s->owned = (sl_vec){0};
    const owned *o = list.p;
    uint64_t removed = 0;
    for (size_t i = 0; i < list.n; i++) {
        hosted_space *sp = sl__space_by_serial(srv, o[i].serial);
        if (sp && sl_idmap_get(&sp->owners, o[i].id) == s->idx + 1) {
            sl__space_remove_entity(srv, sp, o[i].id);
            removed++;
        }
    }
    sl__log(srv, "session %u expired: %llu entities removed", s->idx,
            (unsigned long long)removed);
    assert(s->live == 0);
    s->used = false;
    list.n = 0;
    s->owned = list;            /* (its buffer serves the slot's next session) */
}

void sl__session_expire_due(sl_server *srv, double now_ms)
{
    for (uint32_t i = 0; i < srv->nsessions; i++) {
        session *s = srv->sessions[i];
        if (s->used && !s->conn && now_ms - s->detached_ms >= srv->cfg.grace_ms)
            session_expire(srv, s);
    }
}

void sl__session_free_all(sl_server *srv)
{
    for (uint32_t i = 0; i < srv->nsessions; i++) {
        session *s = srv->sessions[i];
        sl_vec_free(&s->enter);
        sl_vec_free(&s->leave);
        sl_vec_free(&s->stay);
        sl_vec_free(&s->emits);
        sl_vec_free(&s->owned);
        free(s);
    }
    free(srv->sessions);
    srv->sessions = NULL;
    srv->nsessions = srv->capsessions = 0;
}
