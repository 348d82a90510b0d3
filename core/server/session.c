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

/* A fresh session (in a free slot if there is one) with token (NULL: a new one), or NULL on
 * OOM or without randomness. */
static session *session_new(sl_server *srv, const char *given)
{
    char token[33];
    if (given)
        snprintf(token, sizeof token, "%s", given);
    else if (new_token(token))
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
    s->peer = s->parked = s->held_lost = false;
    s->claimed.n = s->held_at.n = s->regions.n = 0;
    assert(!s->dirty && !s->enter.n && !s->leave.n && !s->stay.n && !s->emits.n &&
           !s->genter.n && !s->gleave.n && !s->renter.n && !s->rleave.n);
    assert(!s->held.bytes.n);
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
    } else if (!(s = session_new(srv, NULL))) {
        sl_conn_close_reply(c, m, "internal", "no session could be made (out of memory or randomness)");
        return;
    }
    s->conn = c;
    sl_conn_set_data(c, s);
    sl_conn_accept(c);
    if (m->secret.n) {
        /* Another node of the cluster (a handoff): it must know the secret. */
        s->peer = srv->secret[0] && m->secret.n == strlen(srv->secret) &&
                  token_equal(srv->secret, m->secret.p, m->secret.n);
        if (!s->peer) {
            sl_conn_close_reply(c, m, "forbidden", "hello: wrong cluster secret, or this "
                                "node has none");
            return;
        }
    }
    send_welcome(srv, c, m, s, resumed);
    if (s->parked)
        sl__session_unpark(srv, s, c);
}

sl_obuf *sl__session_out(sl_server *srv, session *s)
{
    if (s->conn)
        return sl_conn_out(s->conn);
    if (s->held.bytes.n > srv->cfg.out_cap && !s->held_lost) {
        /* Nobody claimed it in time to keep up: its frames go, and the client is told. */
        sl__log(srv, "session %u (parked by a handoff): %zu bytes of tick frames held; "
                "dropped", s->idx, s->held.bytes.n);
        sl_obuf_free(&s->held);
        s->held_at.n = 0;
        s->held_lost = true;
    }
    return &s->held;
}

void sl__session_held(session *s, uint64_t serial, size_t start)
{
    held_frame *h = s->conn ? NULL : sl_vec_push(&s->held_at, sizeof *h);
    if (h)
        *h = (held_frame){serial, start, s->held.bytes.n - start};
}

session *sl__session_park(sl_server *srv, const char *token)
{
    session *s = session_by_token(srv, token, strlen(token));
    if (s)
        return s;
    if (!(s = session_new(srv, token)))
        return NULL;
    s->parked = true;
    s->detached_ms = sl_now_ms();
    return s;
}

/* Sends c the frames s holds of the space of that serial (0: all), in their order, and
 * keeps the others. */
static void send_held(session *s, uint64_t serial, sl_conn *c)
{
    sl_obuf *out = sl_conn_out(c);
    held_frame *h = s->held_at.p;
    char *bytes = s->held.bytes.p;
    size_t kept = 0, at = 0;
    for (size_t i = 0; i < s->held_at.n; i++) {
        if (!serial || h[i].serial == serial) {
            sl_vec_append(&out->bytes, bytes + h[i].off, 1, h[i].len);
            continue;
        }
        memmove(bytes + at, bytes + h[i].off, h[i].len);
        h[kept] = (held_frame){h[i].serial, at, h[i].len};
        at += h[i].len;
        kept++;
    }
    s->held_at.n = kept;
    s->held.bytes.n = at;
    if (s->held_lost)
        sl_enc_error(out, false, 0, "events_lost", "tick frames of the spaces that moved here "
                     "were dropped while the session waited to be claimed (past the output "
                     "cap): rebuild your view from the next ticks");
    s->held_lost = false;
}

void sl__session_unpark(sl_server *srv, session *s, sl_conn *c)
{
    (void)srv;
    send_held(s, 0, c);
    sl_obuf_free(&s->held);
    s->parked = false;
}

int sl__session_claim(sl_server *srv, session *s, const char *token, size_t n,
                      hosted_space *sp)
{
    session *t = session_by_token(srv, token, n);
    if (t == s)
        return 0;
    const char *done = s->claimed.p;
    for (size_t i = 0; !t && i < s->claimed.n; i++)
        if (token_equal(done + 33 * i, token, n))
            return 0;           /* claimed already (and nothing of it waits any more) */
    if (!t || t->conn)
        return SL_ENOENT;
    bool known = false;
    for (size_t i = 0; i < s->claimed.n && !known; i++)
        known = !strcmp(done + 33 * i, t->token);
    char *mark = known ? NULL : sl_vec_push(&s->claimed, 33);
    if (mark)
        memcpy(mark, t->token, 33);
    /* Its entities in sp become s's (the owner map says whose an entity is); those of
     * other spaces wait for their own claims. */
    owned *o = t->owned.p;
    size_t kept = 0;
    for (size_t i = 0; i < t->owned.n; i++) {
        owned *mine = NULL;
        if (o[i].serial == sp->serial && sl_idmap_get(&sp->owners, o[i].id) == t->idx + 1 &&
            (mine = sl_vec_push(&s->owned, sizeof *mine))) {
            sl_idmap_del(&sp->owners, o[i].id); /* (put inserts: the old value goes first) */
            if (!sl_idmap_put(&sp->owners, NULL, o[i].id, s->idx + 1)) {
                *mine = o[i];
                s->live++;
                t->live--;
                continue;
            }
            s->owned.n--;       /* (out of memory: it stays the parked session's) */
            sl_idmap_put(&sp->owners, NULL, o[i].id, t->idx + 1);
        }
        o[kept++] = o[i];
    }
    t->owned.n = kept;
    /* Its regions in sp too. */
    owned *g = t->regions.p;
    kept = 0;
    for (size_t i = 0; i < t->regions.n; i++) {
        owned *mine = NULL;
        if (g[i].serial == sp->serial &&
            sl_idmap_get(&sp->region_owners, g[i].id) == t->idx + 1 &&
            (mine = sl_vec_push(&s->regions, sizeof *mine))) {
            sl_idmap_del(&sp->region_owners, g[i].id);
            if (!sl_idmap_put(&sp->region_owners, NULL, g[i].id, s->idx + 1)) {
                *mine = g[i];
                continue;
            }
            s->regions.n--;     /* (out of memory: it stays the parked session's) */
            sl_idmap_put(&sp->region_owners, NULL, g[i].id, t->idx + 1);
        }
        g[kept++] = g[i];
    }
    t->regions.n = kept;
    if (s->conn)
        send_held(t, sp->serial, s->conn);
    if (t->live == 0 && !t->held_at.n && !t->regions.n) {
        sl_obuf_free(&t->held);
        t->owned.n = t->held_at.n = 0;
        t->used = t->parked = false;
    }
    return 0;
}

void sl__session_detach(void *ud, sl_conn *c, const char *reason)
{
    sl_server *srv = ud;
    sl__handoff_conn_closed(srv, c);
    session *s = sl_conn_data(c);
    if (s && s->conn == c) {
        s->conn = NULL;
        s->detached_ms = sl_now_ms();
        sl__log(srv, "%s: session %u detached (%s); its entities stay %.0f ms", sl_conn_peer(c),
                s->idx, reason, srv->cfg.grace_ms);
    }
}

bool sl__session_regions_room(sl_server *srv, session *s)
{
    owned *g = s->regions.p;
    size_t n = 0;
    for (size_t i = 0; s->regions.n >= srv->cfg.max_session_regions && i < s->regions.n;
         i++) {
        const hosted_space *sp = sl__space_by_serial(srv, g[i].serial);
        if (sp && sl_idmap_get(&sp->region_owners, g[i].id) == s->idx + 1)
            g[n++] = g[i];
    }
    if (s->regions.n >= srv->cfg.max_session_regions)
        s->regions.n = n;
    return s->regions.n < srv->cfg.max_session_regions;
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
    const owned *g = s->regions.p;
    for (size_t i = 0; i < s->regions.n; i++) {
        hosted_space *sp = sl__space_by_serial(srv, g[i].serial);
        if (sp && sl_idmap_get(&sp->region_owners, g[i].id) == s->idx + 1)
            sl__space_remove_region(srv, sp, g[i].id);
    }
    s->regions.n = 0;
    sl__log(srv, "session %u expired: %llu entities removed", s->idx,
            (unsigned long long)removed);
    assert(s->live == 0);
    s->used = false;
    s->parked = false;
    sl_obuf_free(&s->held);
    s->held_at.n = 0;
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
        sl_vec_free(&s->genter);
        sl_vec_free(&s->gleave);
        sl_vec_free(&s->renter);
        sl_vec_free(&s->rleave);
        sl_vec_free(&s->regions);
        sl_vec_free(&s->owned);
        sl_vec_free(&s->claimed);
        sl_vec_free(&s->held_at);
        sl_obuf_free(&s->held);
        free(s);
    }
    free(srv->sessions);
    srv->sessions = NULL;
    srv->nsessions = srv->capsessions = 0;
}
