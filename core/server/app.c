/*
 * app.c: the sightline server (see app.h and proto/PROTOCOL.md).
 *
 * Sessions. A client becomes a session with its hello; the session, not the connection,
 * owns the entities the client adds (owners: per space, entity id -> session index + 1).
 * When the connection drops, the session is detached and its entities stay for the grace
 * period; a hello presenting the session's token within it takes the session over, else
 * the tick removes the entities (their leaves go out as usual).
 *
 * The tick. A libuv timer runs every space's tick (through its script host), routes each
 * event and custom event to the session owning the watcher, and sends each session one
 * `tick` frame per space, then flushes every connection once.
 * Requests are handled as their frames arrive; they change spaces at once, and the events
 * they cause come out at the next tick, as the core promises.
 */
#include "server/app.h"

#include "lua/host.h"
#include "engine/idmap.h"
#include "net/net.h"
#include "engine/space.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SPACES 1024u
#define STATIC_OWNER (UINT32_MAX - 1)   /* owners value of entities defined in etcd */
#define MAX_NAME 64u
#define TICK_HIST 1024u

typedef struct enter_ev {
    uint64_t w, t;
    float x, y;
} enter_ev;

typedef struct pair_ev {
    uint64_t w, t;
} pair_ev;

typedef struct emit_ev {
    uint64_t w;
    size_t name, name_len, payload, payload_len;    /* offsets into the app's emit arena */
} emit_ev;

typedef struct owned {
    uint64_t serial;        /* the space's serial number (names may be reused) */
    uint64_t id;
} owned;

/* A growable array of fixed-size items. */
typedef struct vec {
    void *p;
    size_t n, cap;
} vec;

static void *vec_push(vec *v, size_t size)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        void *p = realloc(v->p, cap * size);
        if (!p)
            return NULL;
        v->p = p;
        v->cap = cap;
    }
    return (char *)v->p + v->n++ * size;
}

typedef struct session {
    uint32_t idx;
    bool used;
    char token[33];
    sl_conn *conn;              /* NULL while detached */
    double detached_ms;
    vec enter, leave, stay;     /* this space-tick's events for the session */
    vec emits;                  /* this space-tick's custom events for the session */
    bool dirty;                 /* has events in the current space-tick */
    vec owned;                  /* entities added (may name removed ones; see expire) */
} session;

typedef struct aspace {
    char name[MAX_NAME + 1];
    uint64_t serial;
    sl_space *s;
    sl_lua *h;
    sl_idmap owners;           /* entity id -> session idx + 1 */
    uint64_t ticks;
    double period_ms;           /* its own tick period (0: every server tick) */
    double due_ms;              /* when it ticks next */
} aspace;

struct sl_app {
    uv_loop_t *loop;
    sl_app_config cfg;
    sl_net *net;
    uv_timer_t timer;
    bool timer_on, stopping;
    aspace *spaces[MAX_SPACES];
    uint32_t nspaces;
    uint64_t next_serial;
    session **sessions;
    uint32_t nsessions, capsessions;
    vec dirty;                  /* sessions with events in the current space-tick */
    vec arena;                  /* the current space-tick's custom event strings (chars) */
    aspace *ticking;            /* the space whose tick is running */
    vec batch, batch_item;      /* a moves frame's valid moves (sl_move), their item numbers */
    sl_obuf scratch;
    sl_decoder *dec;
    /* Figures for stats. */
    /* Static entities (defined in etcd) whose delete waits out its grace period. */
    struct pending_delete {
        uint64_t serial, id;
        double at_ms;
    } *pdel;
    size_t npdel, cappdel;
    char cluster_status[512];   /* a line about etcd for stats, set by cluster.c */
    /* `record start`: a replay trace of one space. */
    FILE *rec;
    uint64_t rec_serial;
    char rec_path[256];
    double tick_hist[TICK_HIST];
    uint64_t hist_n;            /* ticks in tick_hist since the last `stats reset` */
    uint64_t ticks, events_sent, frames_in, errors_sent, moves;
    double started_ms;
    uint64_t events_at_mark;
    double mark_ms, events_per_s;
    uint64_t rng;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void logf_(const sl_app *a, const char *fmt, ...)
{
    if (a->cfg.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sightline: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- recording ---------------------------------------------------------------------------- */

/* Appends a line to the trace being recorded, if it records space sp. */
static void rec(sl_app *a, const struct aspace *sp, const char *fmt, ...);

/* A prop line; a string that the trace format cannot carry (whitespace, or one that would
 * read back as a number, boolean or nil) becomes a comment saying so. */
static void rec_prop(sl_app *a, const struct aspace *sp, uint64_t id, const char *key,
                     const sl_value *v)
{
    bool b = v->b;
    double n = v->n;
    const char *str = v->s;
    size_t len = v->len;
    switch (v->type) {
    case SL_VALUE_NIL: rec(a, sp, "prop %llu %s nil\n", (unsigned long long)id, key); return;
    case SL_VALUE_BOOL:
        rec(a, sp, "prop %llu %s %s\n", (unsigned long long)id, key, b ? "true" : "false");
        return;
    case SL_VALUE_NUMBER: rec(a, sp, "prop %llu %s %.17g\n", (unsigned long long)id, key, n); return;
    case SL_VALUE_STRING: break;
    }
    char *end;
    bool plain = len > 0 && strcspn(str, " \t\r\n#") >= len && strcmp(str, "true") &&
                 strcmp(str, "false") && strcmp(str, "nil");
    if (plain) {
        (void)strtod(str, &end);
        plain = end == str;
    }
    if (plain)
        rec(a, sp, "prop %llu %s %.*s\n", (unsigned long long)id, key, (int)len, str);
    else
        rec(a, sp, "# prop %llu %s: a string value the trace format cannot carry\n",
            (unsigned long long)id, key);
}

/* ---- spaces ------------------------------------------------------------------------------ */

static void rec(sl_app *a, const aspace *sp, const char *fmt, ...)
{
    if (!a->rec || sp->serial != a->rec_serial)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(a->rec, fmt, ap);
    va_end(ap);
}

static aspace *find_space(const sl_app *a, const sl_str *name)
{
    for (uint32_t i = 0; i < a->nspaces; i++)
        if (strlen(a->spaces[i]->name) == name->n && !memcmp(a->spaces[i]->name, name->p, name->n))
            return a->spaces[i];
    return NULL;
}

static aspace *find_space_c(const sl_app *a, const char *name)
{
    sl_str s = {name, strlen(name)};
    return find_space(a, &s);
}

static void script_log(void *ud, const char *msg)
{
    aspace *sp = ud;
    fprintf(stderr, "sightline: space %s: scripts: %s\n", sp->name, msg);
}

/* Creates a space; returns 0 or an error code string with msg filled. */
static const char *space_create_in(sl_app *a, const sl_str *name, const sl_space_config *cfg,
                                   const char *scripts, char *msg, size_t len);

static const char *space_create(sl_app *a, const sl_str *name, const sl_space_config *cfg,
                                char *msg, size_t len)
{
    return space_create_in(a, name, cfg, a->cfg.scripts, msg, len);
}

/* Creates a space whose scripts are `scripts` (NULL: none). */
static const char *space_create_in(sl_app *a, const sl_str *name, const sl_space_config *cfg,
                                   const char *scripts, char *msg, size_t len)
{
    if (name->n == 0 || name->n > MAX_NAME) {
        snprintf(msg, len, "space names are 1 to %u bytes", MAX_NAME);
        return "bad_value";
    }
    if (find_space(a, name)) {
        snprintf(msg, len, "space %.*s exists", (int)name->n, name->p);
        return "space_exists";
    }
    if (a->nspaces == MAX_SPACES) {
        snprintf(msg, len, "at most %u spaces", MAX_SPACES);
        return "limit";
    }
    aspace *sp = calloc(1, sizeof *sp);
    if (!sp) {
        snprintf(msg, len, "out of memory");
        return "internal";
    }
    memcpy(sp->name, name->p, name->n);
    sp->serial = ++a->next_serial;
    char why[4096];
    if (sl_space_new(&sp->s, cfg, why, sizeof why)) {
        free(sp);
        snprintf(msg, len, "%.400s", why);
        return "bad_value";
    }
    sl_lua_config lc = {.dir = scripts, .budget_ms = a->cfg.budget_ms,
                        .mem_limit = a->cfg.mem_limit, .unsafe = a->cfg.unsafe_scripts,
                        .log = script_log, .log_ud = sp};
    if (scripts && sl_lua_new(&sp->h, sp->s, &lc, why, sizeof why)) {
        sl_space_free(sp->s);
        free(sp);
        snprintf(msg, len, "scripts %.100s: %.380s", scripts, why);
        return "scripts";
    }
    a->spaces[a->nspaces++] = sp;
    logf_(a, "space %s created (%gx%g)", sp->name, (double)cfg->width, (double)cfg->height);
    return NULL;
}

static void space_free(aspace *sp)
{
    sl_lua_free(sp->h);
    sl_space_free(sp->s);
    sl_idmap_free(&sp->owners, NULL);
    free(sp);
}

static void space_drop(sl_app *a, aspace *sp)
{
    for (uint32_t i = 0; i < a->nspaces; i++) {
        if (a->spaces[i] == sp) {
            a->spaces[i] = a->spaces[--a->nspaces];
            break;
        }
    }
    logf_(a, "space %s dropped", sp->name);
    if (a->rec && a->rec_serial == sp->serial) {
        fclose(a->rec);
        a->rec = NULL;
        logf_(a, "recording %s stopped: its space was dropped", a->rec_path);
    }
    space_free(sp);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static uint64_t next_rand(sl_app *a)
{
    /* splitmix64 over a seed from the clock and the address space: session tokens only
     * need to be unguessable to other clients of this server. */
    uint64_t z = (a->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static session *session_new(sl_app *a)
{
    uint32_t idx = UINT32_MAX;
    for (uint32_t i = 0; i < a->nsessions; i++)
        if (!a->sessions[i]->used)
            idx = i;
    if (idx == UINT32_MAX) {
        if (a->nsessions == a->capsessions) {
            uint32_t cap = a->capsessions ? a->capsessions * 2 : 16;
            session **p = realloc(a->sessions, cap * sizeof *p);
            if (!p)
                return NULL;
            a->sessions = p;
            a->capsessions = cap;
        }
        session *s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        idx = a->nsessions++;
        a->sessions[idx] = s;
    }
    session *s = a->sessions[idx];
    s->idx = idx;
    s->used = true;
    s->conn = NULL;
    s->owned.n = 0;
    snprintf(s->token, sizeof s->token, "%016llx%016llx", (unsigned long long)next_rand(a),
             (unsigned long long)next_rand(a));
    return s;
}

/* Whether session s owns entity id of space sp. */
static bool owns(const aspace *sp, const session *s, uint64_t id)
{
    return sl_idmap_get(&sp->owners, id) == s->idx + 1;
}

/* Removes every entity the session still owns (its grace period ran out). */
static void session_expire(sl_app *a, session *s)
{
    const owned *o = s->owned.p;
    uint64_t removed = 0;
    for (size_t i = 0; i < s->owned.n; i++) {
        for (uint32_t k = 0; k < a->nspaces; k++) {
            aspace *sp = a->spaces[k];
            if (sp->serial == o[i].serial && owns(sp, s, o[i].id)) {
                sl_space_remove(sp->s, o[i].id);
                rec(a, sp, "remove %llu\n", (unsigned long long)o[i].id);
                if (sp->h)
                    sl_lua_forget(sp->h, o[i].id);
                sl_idmap_del(&sp->owners, o[i].id);
                removed++;
            }
        }
    }
    logf_(a, "session %u expired: %llu entities removed", s->idx, (unsigned long long)removed);
    s->used = false;
    s->owned.n = 0;
}

/* ---- replies ------------------------------------------------------------------------------ */

static void reply_error(sl_app *a, sl_conn *c, const sl_msg *m, const char *code,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_enc_error(sl_conn_out(c), m && m->has_rid, m ? m->rid : 0, code, msg);
    a->errors_sent++;
}

/* Replies to a failed space operation with the space's own message. */
static void reply_space_error(sl_app *a, sl_conn *c, const sl_msg *m, const aspace *sp, int rc)
{
    const char *code = rc == SL_EEXIST ? "exists" : rc == SL_ENOENT ? "no_entity"
                     : rc == SL_ENOMEM ? "internal" : "bad_value";
    reply_error(a, c, m, code, "%s", sl_space_error(sp->s));
}

static void reply_ok(sl_conn *c, const sl_msg *m)
{
    if (m->has_rid)
        sl_enc_ok(sl_conn_out(c), m->rid);
}

/* ---- requests ----------------------------------------------------------------------------- */

static void set_props(sl_app *a, sl_conn *c, const sl_msg *m, aspace *sp)
{
    for (uint32_t i = 0; i < m->n; i++) {
        sl_str k;
        sl_value v;
        if (!sl_msg_prop_at(m, i, &k, &v)) {
            reply_error(a, c, m, "bad_message", "props: keys must be strings, values nil, "
                        "booleans, numbers or strings");
            return;
        }
        if (!sp->h)
            continue;
        char key[128];
        if (k.n == 0 || k.n >= sizeof key) {
            reply_error(a, c, m, "bad_value", "props: keys are 1 to %zu bytes", sizeof key - 1);
            continue;
        }
        memcpy(key, k.p, k.n);
        key[k.n] = '\0';
        int rc = sl_lua_set_prop(sp->h, m->e, key, &v);
        if (rc)
            reply_error(a, c, m, rc == SL_ENOENT ? "no_entity" : "bad_value",
                        "props %llu %s: %s", (unsigned long long)m->e, key, sl_strerror(rc));
        else
            rec_prop(a, sp, m->e, key, &v);
    }
}

/* Looks up the space and checks that the session owns entity e; replies on failure. */
static aspace *owned_target(sl_app *a, sl_conn *c, session *s, const sl_msg *m, uint64_t e)
{
    aspace *sp = find_space(a, &m->space);
    if (!sp) {
        reply_error(a, c, m, "no_space", "no space %.*s", (int)m->space.n, m->space.p);
        return NULL;
    }
    uint32_t owner = sl_idmap_get(&sp->owners, e);
    if (owner == UINT32_MAX) {
        reply_error(a, c, m, "no_entity", "%s %llu: no such entity", sl_msg_name(m->type),
                    (unsigned long long)e);
        return NULL;
    }
    if (owner != s->idx + 1) {
        reply_error(a, c, m, "foreign", "%s %llu: the entity belongs to another client",
                    sl_msg_name(m->type), (unsigned long long)e);
        return NULL;
    }
    return sp;
}

static void handle_hello(sl_app *a, sl_conn *c, const sl_msg *m)
{
    if (m->version != SL_PROTO_VERSION) {
        char why[96];
        snprintf(why, sizeof why, "protocol version %u is not supported (this server: %u)",
                 m->version, SL_PROTO_VERSION);
        sl_conn_close(c, "bad_version", why);
        return;
    }
    if (a->cfg.token && (m->token.n != strlen(a->cfg.token) ||
                         memcmp(m->token.p, a->cfg.token, m->token.n) != 0)) {
        sl_conn_close(c, "bad_token", "hello: wrong or missing token");
        return;
    }
    session *s = NULL;
    bool resumed = false;
    if (m->session.n) {
        for (uint32_t i = 0; i < a->nsessions && !s; i++) {
            session *t = a->sessions[i];
            if (t->used && strlen(t->token) == m->session.n &&
                !memcmp(t->token, m->session.p, m->session.n))
                s = t;
        }
        if (!s) {
            sl_conn_close(c, "no_session", "hello: no such session (expired?)");
            return;
        }
        if (s->conn) {
            /* The old connection is still open (e.g. a half-dead socket): the newcomer
             * with the token wins. */
            sl_conn_set_data(s->conn, NULL);
            sl_conn_close(s->conn, "replaced", "another connection resumed this session");
        }
        resumed = true;
    } else if (!(s = session_new(a))) {
        sl_conn_close(c, "internal", "out of memory");
        return;
    }
    s->conn = c;
    sl_conn_set_data(c, s);
    sl_enc e;
    sl_enc_begin(&e, sl_conn_out(c));
    sl_enc_map(&e, m->has_rid ? 7 : 6);
    sl_enc_kv_str(&e, "t", "welcome");
    if (m->has_rid)
        sl_enc_kv_u64(&e, "rid", m->rid);
    sl_enc_kv_u64(&e, "v", SL_PROTO_VERSION);
    sl_enc_kv_str(&e, "session", s->token);
    sl_enc_str(&e, "resumed");
    sl_enc_bool(&e, resumed);
    sl_enc_str(&e, "tick_ms");
    sl_enc_f64(&e, a->cfg.tick_ms);
    sl_enc_kv_u64(&e, "max_frame", a->cfg.max_frame);
    sl_enc_end(&e);
}

/* A moves frame's batch in sl_space_move_many: failures are answered, and marked in the
 * item numbers (MOVE_FAILED) so that a recording leaves them out. */
#define MOVE_FAILED 0x80000000u
typedef struct moves_ctx {
    sl_app *a;
    sl_conn *c;
    const sl_msg *m;
    aspace *sp;
} moves_ctx;

static void move_failed(void *ud, size_t i, int code)
{
    moves_ctx *mc = ud;
    uint32_t *item = mc->a->batch_item.p;
    (void)code;
    reply_error(mc->a, mc->c, mc->m, "bad_value", "moves: item %u: %s", item[i],
                sl_space_error(mc->sp->s));
    item[i] |= MOVE_FAILED;
}

static void handle(sl_app *a, sl_conn *c, session *s, const sl_msg *m)
{
    int rc;
    aspace *sp;
    switch (m->type) {
    case SL_MSG_HELLO:
        reply_error(a, c, m, "bad_message", "hello: already said");
        return;
    case SL_MSG_PING: {
        sl_enc e;
        sl_enc_begin(&e, sl_conn_out(c));
        sl_enc_map(&e, m->has_rid ? 2 : 1);
        sl_enc_kv_str(&e, "t", "pong");
        if (m->has_rid)
            sl_enc_kv_u64(&e, "rid", m->rid);
        sl_enc_end(&e);
        return;
    }
    case SL_MSG_SPACE_CREATE: {
        sl_space_config cfg = {.width = m->w, .height = m->h, .cell = m->cell,
                               .hysteresis = m->hyst, .stay = m->stay, .index = SL_INDEX_AUTO};
        if (m->index.n) {
            char kind[16] = "";
            snprintf(kind, sizeof kind, "%.*s", (int)(m->index.n < 15 ? m->index.n : 15),
                     m->index.p);
            if (sl_index_kind_parse(kind, &cfg.index)) {
                reply_error(a, c, m, "bad_value", "space.create: index must be grid, quadtree or auto");
                return;
            }
        }
        char msg[512];
        const char *code = space_create(a, &m->space, &cfg, msg, sizeof msg);
        if (code)
            reply_error(a, c, m, code, "space.create: %s", msg);
        else
            reply_ok(c, m);
        return;
    }
    case SL_MSG_SPACE_DROP:
        if (!(sp = find_space(a, &m->space))) {
            reply_error(a, c, m, "no_space", "no space %.*s", (int)m->space.n, m->space.p);
            return;
        }
        space_drop(a, sp);
        reply_ok(c, m);
        return;
    case SL_MSG_ADD: {
        if (!(sp = find_space(a, &m->space))) {
            reply_error(a, c, m, "no_space", "no space %.*s", (int)m->space.n, m->space.p);
            return;
        }
        if ((rc = sl_space_add(sp->s, m->e, m->x, m->y, m->r, m->layer, m->mask))) {
            reply_space_error(a, c, m, sp, rc);
            return;
        }
        owned *o = vec_push(&s->owned, sizeof *o);
        if (!o || sl_idmap_put(&sp->owners, NULL, m->e, s->idx + 1)) {
            if (o)
                s->owned.n--;
            sl_space_remove(sp->s, m->e);
            reply_error(a, c, m, "internal", "add: out of memory");
            return;
        }
        *o = (owned){sp->serial, m->e};
        rec(a, sp, "add %llu %.9g %.9g %.9g %u 0x%x\n", (unsigned long long)m->e, (double)m->x,
            (double)m->y, (double)m->r, m->layer, m->mask);
        if (m->props)
            set_props(a, c, m, sp);
        reply_ok(c, m);
        return;
    }
    case SL_MSG_MOVE:
        if (!(sp = owned_target(a, c, s, m, m->e)))
            return;
        a->moves++;
        if ((rc = sl_space_move(sp->s, m->e, m->x, m->y))) {
            reply_space_error(a, c, m, sp, rc);
            return;
        }
        rec(a, sp, "move %llu %.9g %.9g\n", (unsigned long long)m->e, (double)m->x, (double)m->y);
        reply_ok(c, m);
        return;
    case SL_MSG_MOVES: {
        if (!(sp = find_space(a, &m->space))) {
            reply_error(a, c, m, "no_space", "no space %.*s", (int)m->space.n, m->space.p);
            return;
        }
        /* Items that decode and name the client's own entities go to the space as one batch
         * (sl_space_move_many overlaps their memory loads); errors name the item. */
        uint32_t failed = 0;
        a->batch.n = a->batch_item.n = 0;
        for (uint32_t i = 0; i < m->n; i++) {
            uint64_t e;
            float x, y;
            if (i + 8 < m->n && sl_msg_move_at(m, i + 8, &e, &x, &y))
                sl_idmap_prefetch(&sp->owners, e);
            if (!sl_msg_move_at(m, i, &e, &x, &y)) {
                reply_error(a, c, m, "bad_message", "moves: item %u: e must be an unsigned "
                            "integer, x and y numbers", i);
                failed++;
                continue;
            }
            if (!owns(sp, s, e)) {
                reply_error(a, c, m, sl_idmap_get(&sp->owners, e) == UINT32_MAX ? "no_entity"
                            : "foreign", "moves: item %u: entity %llu is %s", i,
                            (unsigned long long)e, sl_idmap_get(&sp->owners, e) == UINT32_MAX
                            ? "unknown" : "another client's");
                failed++;
                continue;
            }
            sl_move *mv = vec_push(&a->batch, sizeof *mv);
            uint32_t *item = mv ? vec_push(&a->batch_item, sizeof *item) : NULL;
            if (!item) {
                if (mv)
                    a->batch.n--;   /* the two vectors stay the same length */
                reply_error(a, c, m, "internal", "moves: item %u: out of memory", i);
                failed++;
                continue;
            }
            *mv = (sl_move){e, x, y};
            *item = i;
        }
        moves_ctx mc = {a, c, m, sp};
        failed += (uint32_t)sl_space_move_many(sp->s, a->batch.p, a->batch.n, move_failed, &mc);
        if (a->rec) {
            const sl_move *mv = a->batch.p;
            const uint32_t *item = a->batch_item.p;
            for (size_t i = 0; i < a->batch.n; i++)
                if (!(item[i] & MOVE_FAILED))
                    rec(a, sp, "move %llu %.9g %.9g\n", (unsigned long long)mv[i].id,
                        (double)mv[i].x, (double)mv[i].y);
        }
        a->moves += m->n - failed;
        if (!failed)
            reply_ok(c, m);
        return;
    }
    case SL_MSG_RADIUS:
    case SL_MSG_LAYER:
    case SL_MSG_MASK:
    case SL_MSG_PROPS:
    case SL_MSG_REMOVE:
        if (!(sp = owned_target(a, c, s, m, m->e)))
            return;
        rc = 0;
        if (m->type == SL_MSG_RADIUS)
            rc = sl_space_set_radius(sp->s, m->e, m->r);
        else if (m->type == SL_MSG_LAYER)
            rc = sl_space_set_layer(sp->s, m->e, m->layer);
        else if (m->type == SL_MSG_MASK)
            rc = sl_space_set_mask(sp->s, m->e, m->mask);
        else if (m->type == SL_MSG_PROPS)
            set_props(a, c, m, sp);
        else if (!(rc = sl_space_remove(sp->s, m->e))) {
            sl_idmap_del(&sp->owners, m->e);
            if (sp->h)
                sl_lua_forget(sp->h, m->e);
        }
        if (rc) {
            reply_space_error(a, c, m, sp, rc);
            return;
        }
        if (m->type == SL_MSG_RADIUS)
            rec(a, sp, "radius %llu %.9g\n", (unsigned long long)m->e, (double)m->r);
        else if (m->type == SL_MSG_LAYER)
            rec(a, sp, "layer %llu %u\n", (unsigned long long)m->e, m->layer);
        else if (m->type == SL_MSG_MASK)
            rec(a, sp, "mask %llu 0x%x\n", (unsigned long long)m->e, m->mask);
        else if (m->type == SL_MSG_REMOVE)
            rec(a, sp, "remove %llu\n", (unsigned long long)m->e);
        reply_ok(c, m);
        return;
    case SL_MSG_COUNT:
        break;
    }
}

/* ---- connections -------------------------------------------------------------------------- */

static void on_frame(void *ud, sl_conn *c, const char *body, size_t len)
{
    sl_app *a = ud;
    a->frames_in++;
    sl_msg m;
    char err[256];
    sl_decode_rc rc = sl_decode(a->dec, body, len, &m, err, sizeof err);
    if (rc == SL_DECODE_BAD_FRAME) {
        logf_(a, "%s: %s; closing", sl_conn_peer(c), err);
        sl_conn_close(c, "bad_frame", err);
        return;
    }
    if (rc != SL_DECODE_OK) {
        reply_error(a, c, &m, rc == SL_DECODE_UNKNOWN ? "unknown_type" : "bad_message", "%s", err);
        return;
    }
    session *s = sl_conn_data(c);
    if (!s) {
        if (m.type != SL_MSG_HELLO)
            sl_conn_close(c, "not_hello", "the first message must be hello");
        else
            handle_hello(a, c, &m);
        return;
    }
    handle(a, c, s, &m);
}

static void on_close(void *ud, sl_conn *c, const char *reason)
{
    sl_app *a = ud;
    session *s = sl_conn_data(c);
    if (s && s->conn == c) {
        s->conn = NULL;
        s->detached_ms = now_ms();
        logf_(a, "%s: session %u detached (%s); its entities stay %.0f ms", sl_conn_peer(c),
              s->idx, reason, a->cfg.grace_ms);
    }
}

/* ---- the tick ----------------------------------------------------------------------------- */

static session *owner_of(const sl_app *a, const aspace *sp, uint64_t watcher)
{
    uint32_t o = sl_idmap_get(&sp->owners, watcher);
    if (o == UINT32_MAX || o == 0 || o > a->nsessions)
        return NULL;
    session *s = a->sessions[o - 1];
    return s->used && s->conn ? s : NULL;
}

static void mark_dirty(sl_app *a, session *s)
{
    if (!s->dirty) {
        s->dirty = true;
        session **p = vec_push(&a->dirty, sizeof *p);
        if (p)
            *p = s;
    }
}

static void tick_sink(void *ud, const sl_event *ev, size_t n)
{
    sl_app *a = ud;
    aspace *sp = a->ticking;
    for (size_t i = 0; i < n; i++) {
        session *s = owner_of(a, sp, ev[i].watcher);
        if (!s)
            continue;
        mark_dirty(a, s);
        if (ev[i].kind == SL_EVENT_ENTER) {
            enter_ev *e = vec_push(&s->enter, sizeof *e);
            float x = 0, y = 0;
            sl_space_position(sp->s, ev[i].target, &x, &y);
            if (e)
                *e = (enter_ev){ev[i].watcher, ev[i].target, x, y};
        } else {
            pair_ev *p = vec_push(ev[i].kind == SL_EVENT_LEAVE ? &s->leave : &s->stay, sizeof *p);
            if (p)
                *p = (pair_ev){ev[i].watcher, ev[i].target};
        }
    }
}

/* Appends n bytes to the arena; returns their offset, or SIZE_MAX on OOM. */
static size_t arena_put(vec *v, const char *p, size_t n)
{
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 4096;
        while (cap < v->n + n)
            cap *= 2;
        char *q = realloc(v->p, cap);
        if (!q)
            return SIZE_MAX;
        v->p = q;
        v->cap = cap;
    }
    memcpy((char *)v->p + v->n, p, n);
    v->n += n;
    return v->n - n;
}

/* Custom events: kept (copied: ev lives only during this call) for the owners' tick frames. */
static void emit_sink(void *ud, const sl_lua_emit *ev, size_t n)
{
    sl_app *a = ud;
    aspace *sp = a->ticking;
    for (size_t i = 0; i < n; i++) {
        session *s = owner_of(a, sp, ev[i].watcher);
        if (!s)
            continue;
        size_t name = arena_put(&a->arena, ev[i].name, ev[i].name_len);
        size_t payload = arena_put(&a->arena, ev[i].payload, ev[i].payload_len);
        emit_ev *e = vec_push(&s->emits, sizeof *e);
        if (!e || name == SIZE_MAX || payload == SIZE_MAX)
            continue;
        *e = (emit_ev){ev[i].watcher, name, ev[i].name_len, payload, ev[i].payload_len};
        mark_dirty(a, s);
    }
}

/* Sends each session with events its `tick` frame for the space that just ticked. */
static void send_ticks(sl_app *a, aspace *sp)
{
    session **ds = a->dirty.p;
    for (size_t d = 0; d < a->dirty.n; d++) {
        session *s = ds[d];
        s->dirty = false;
        if (s->conn && (s->enter.n || s->leave.n || s->stay.n || s->emits.n)) {
            sl_enc e;
            sl_enc_begin(&e, sl_conn_out(s->conn));
            sl_enc_map(&e, 7);
            sl_enc_kv_str(&e, "t", "tick");
            sl_enc_kv_str(&e, "space", sp->name);
            sl_enc_kv_u64(&e, "n", sp->ticks);
            sl_enc_str(&e, "enter");
            sl_enc_array(&e, (uint32_t)(4 * s->enter.n));
            const enter_ev *en = s->enter.p;
            for (size_t i = 0; i < s->enter.n; i++) {
                sl_enc_u64(&e, en[i].w);
                sl_enc_u64(&e, en[i].t);
                sl_enc_f32(&e, en[i].x);
                sl_enc_f32(&e, en[i].y);
            }
            const vec *lists[2] = {&s->leave, &s->stay};
            static const char *const keys[2] = {"leave", "stay"};
            for (int l = 0; l < 2; l++) {
                sl_enc_str(&e, keys[l]);
                sl_enc_array(&e, (uint32_t)(2 * lists[l]->n));
                const pair_ev *p = lists[l]->p;
                for (size_t i = 0; i < lists[l]->n; i++) {
                    sl_enc_u64(&e, p[i].w);
                    sl_enc_u64(&e, p[i].t);
                }
            }
            sl_enc_str(&e, "emit");
            sl_enc_array(&e, (uint32_t)s->emits.n);
            const emit_ev *em = s->emits.p;
            const char *arena = a->arena.p;
            for (size_t i = 0; i < s->emits.n; i++) {
                sl_enc_array(&e, 3);
                sl_enc_u64(&e, em[i].w);
                sl_enc_strn(&e, arena + em[i].name, em[i].name_len);
                sl_enc_strn(&e, arena + em[i].payload, em[i].payload_len);
            }
            sl_enc_end(&e);
            a->events_sent += s->enter.n + s->leave.n + s->stay.n;
        }
        s->enter.n = s->leave.n = s->stay.n = s->emits.n = 0;
    }
    a->dirty.n = 0;
    a->arena.n = 0;
}

static void on_tick(uv_timer_t *t)
{
    sl_app *a = t->data;
    double t0 = now_ms();
    /* Sessions whose grace ran out lose their entities first: their leaves go out now. */
    for (uint32_t i = 0; i < a->nsessions; i++) {
        session *s = a->sessions[i];
        if (s->used && !s->conn && t0 - s->detached_ms >= a->cfg.grace_ms)
            session_expire(a, s);
    }
    /* Static entities whose grace ran out. */
    for (size_t i = 0; i < a->npdel;) {
        struct pending_delete *d = &a->pdel[i];
        if (t0 < d->at_ms) {
            i++;
            continue;
        }
        for (uint32_t k = 0; k < a->nspaces; k++) {
            aspace *sp = a->spaces[k];
            if (sp->serial == d->serial && sl_idmap_get(&sp->owners, d->id) == STATIC_OWNER) {
                sl_space_remove(sp->s, d->id);
                rec(a, sp, "remove %llu\n", (unsigned long long)d->id);
                sl_idmap_del(&sp->owners, d->id);
                if (sp->h)
                    sl_lua_forget(sp->h, d->id);
            }
        }
        a->pdel[i] = a->pdel[--a->npdel];
    }
    for (uint32_t k = 0; k < a->nspaces; k++) {
        aspace *sp = a->spaces[k];
        if (sp->period_ms > 0) {
            /* A slower space ticks when its period is due (never faster than the server). */
            if (t0 + 1 < sp->due_ms)
                continue;
            sp->due_ms = sp->due_ms + sp->period_ms < t0 ? t0 + sp->period_ms
                                                          : sp->due_ms + sp->period_ms;
        }
        a->ticking = sp;
        sp->ticks++;
        rec(a, sp, "tick\n");
        if (sp->h)
            sl_lua_tick(sp->h, tick_sink, a, emit_sink, a);
        else
            sl_space_tick(sp->s, tick_sink, a);
        send_ticks(a, sp);
    }
    a->ticking = NULL;
    for (uint32_t i = 0; i < a->nsessions; i++)
        if (a->sessions[i]->used && a->sessions[i]->conn)
            sl_conn_flush(a->sessions[i]->conn);
    a->tick_hist[a->hist_n++ % TICK_HIST] = now_ms() - t0;
    a->ticks++;
    if (t0 - a->mark_ms >= 1000) {
        a->events_per_s = (double)(a->events_sent - a->events_at_mark) * 1000 / (t0 - a->mark_ms);
        a->events_at_mark = a->events_sent;
        a->mark_ms = t0;
    }
}

/* ---- life --------------------------------------------------------------------------------- */

int sl_app_new(sl_app **out, uv_loop_t *loop, const sl_app_config *cfg, char *err,
               size_t errlen)
{
    sl_app *a = calloc(1, sizeof *a);
    if (!a)
        return 1;
    a->loop = loop;
    a->cfg = *cfg;
    if (!a->cfg.listen_host)
        a->cfg.listen_host = "127.0.0.1";
    if (!(a->cfg.tick_ms > 0))
        a->cfg.tick_ms = 50;
    if (!a->cfg.max_frame)
        a->cfg.max_frame = 1u << 20;
    if (!(a->cfg.grace_ms >= 0))
        a->cfg.grace_ms = 5000;
    a->started_ms = a->mark_ms = now_ms();
    a->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)a ^ (uint64_t)now_ms() << 20;
    a->dec = sl_decoder_new();
    if (!a->dec) {
        free(a);
        return 1;
    }
    sl_net_config nc = {.host = a->cfg.listen_host, .port = a->cfg.listen_port,
                        .max_frame = a->cfg.max_frame, .out_cap = a->cfg.out_cap};
    sl_net_callbacks cb = {.on_frame = on_frame, .on_close = on_close};
    if (sl_net_listen(&a->net, loop, &nc, &cb, a, err, errlen)) {
        sl_decoder_free(a->dec);
        free(a);
        return 1;
    }
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uint64_t ms = (uint64_t)(a->cfg.tick_ms < 1 ? 1 : a->cfg.tick_ms);
    uv_timer_start(&a->timer, on_tick, ms, ms);
    a->timer_on = true;
    *out = a;
    return 0;
}

int sl_app_port(const sl_app *a)
{
    return sl_net_port(a->net);
}

bool sl_app_stopping(const sl_app *a)
{
    return a->stopping;
}

void sl_app_shutdown(sl_app *a)
{
    if (a->stopping)
        return;
    a->stopping = true;
    /* Events already queued go out; then every client is closed. */
    sl_net_close(a->net);
    a->net = NULL;
    if (a->timer_on) {
        uv_timer_stop(&a->timer);
        uv_close((uv_handle_t *)&a->timer, NULL);
        a->timer_on = false;
    }
}

void sl_app_free(sl_app *a)
{
    if (!a)
        return;
    if (a->rec)
        fclose(a->rec);
    for (uint32_t i = 0; i < a->nspaces; i++)
        space_free(a->spaces[i]);
    for (uint32_t i = 0; i < a->nsessions; i++) {
        session *s = a->sessions[i];
        free(s->enter.p);
        free(s->leave.p);
        free(s->stay.p);
        free(s->emits.p);
        free(s->owned.p);
        free(s);
    }
    free(a->sessions);
    free(a->dirty.p);
    free(a->arena.p);
    free(a->batch.p);
    free(a->batch_item.p);
    free(a->pdel);
    sl_obuf_free(&a->scratch);
    sl_decoder_free(a->dec);
    free(a);
}

/* ---- admin commands ----------------------------------------------------------------------- */

typedef struct out_text {
    char *p;
    size_t n, cap;
} out_text;

static void put(out_text *o, const char *fmt, ...)
{
    if (o->n >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->n = o->n + (size_t)k < o->cap ? o->n + (size_t)k : o->cap - 1;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The server's figures, shared by `stats` and the Prometheus endpoint. */
typedef struct figure {
    const char *name;
    double v;
    bool counter;
    const char *help;
} figure;

enum { NFIGURES = 19 };

static void figures(sl_app *a, figure *f)
{
    uint64_t n = a->hist_n < TICK_HIST ? a->hist_n : TICK_HIST;
    double sorted[TICK_HIST];
    memcpy(sorted, a->tick_hist, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_d);
    double p50 = n ? sorted[n / 2] : 0, p99 = n ? sorted[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0;
    uint32_t clients = 0, sessions = 0;
    for (uint32_t i = 0; i < a->nsessions; i++) {
        sessions += a->sessions[i]->used;
        clients += a->sessions[i]->used && a->sessions[i]->conn;
    }
    uint64_t entities = 0, pairs = 0, script_errors = 0;
    size_t mem = 0;
    uint32_t faulted = 0;
    for (uint32_t k = 0; k < a->nspaces; k++) {
        sl_space_stats st;
        sl_space_get_stats(a->spaces[k]->s, &st);
        entities += st.entities;
        pairs += st.pairs;
        mem += st.bytes_total + sl_idmap_bytes(&a->spaces[k]->owners);
        if (a->spaces[k]->h) {
            sl_lua_stats ls;
            sl_lua_get_stats(a->spaces[k]->h, &ls);
            for (int i = 0; i < SL_FN_COUNT; i++)
                script_errors += ls.errors[i];
            mem += ls.mem_bytes;
            faulted += ls.faulted;
        }
    }
    figure all[NFIGURES] = {
        {"spaces", a->nspaces, false, "spaces"},
        {"entities", (double)entities, false, "entities in all spaces"},
        {"visible_pairs", (double)pairs, false, "visible pairs after the last tick"},
        {"clients", clients, false, "connected clients"},
        {"sessions", sessions, false, "sessions, connected or in their grace period"},
        {"ticks", (double)a->ticks, true, "ticks run"},
        {"tick_ms_p50", p50, false, "median tick time (ms) over the window"},
        {"tick_ms_p99", p99, false, "99th percentile tick time (ms) over the window"},
        {"tick_ms_window", (double)n, false, "ticks in the tick-time window"},
        {"events_per_s", a->events_per_s, false, "events sent per second, last second"},
        {"events_sent", (double)a->events_sent, true, "enter / leave / stay events sent"},
        {"moves", (double)a->moves, true, "moves accepted"},
        {"frames_in", (double)a->frames_in, true, "frames received"},
        {"errors_sent", (double)a->errors_sent, true, "error frames sent"},
        {"script_errors", (double)script_errors, true, "errors raised by scripts"},
        {"scripts_faulted", faulted, false, "spaces whose scripts are stopped"},
        {"memory_bytes", (double)mem, false, "memory held by spaces and scripts"},
        {"uptime_s", (now_ms() - a->started_ms) / 1e3, false, "seconds since start"},
        {"out_queued_bytes", 0, false, "bytes queued to clients"},
    };
    for (uint32_t i = 0; i < a->nsessions; i++)
        if (a->sessions[i]->used && a->sessions[i]->conn)
            all[NFIGURES - 1].v += (double)sl_conn_queued(a->sessions[i]->conn);
    memcpy(f, all, sizeof all);
}

static void put_value(out_text *o, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        put(o, "%.0f\n", v);
    else
        put(o, "%.3f\n", v);
}

static void stats(sl_app *a, out_text *o)
{
    figure f[NFIGURES];
    figures(a, f);
    for (int i = 0; i < NFIGURES; i++) {
        put(o, "%s ", f[i].name);
        put_value(o, f[i].v);
    }
    if (a->cluster_status[0])
        put(o, "etcd %s\n", a->cluster_status);
}

size_t sl_app_metrics(sl_app *a, char *buf, size_t len)
{
    out_text o = {buf, 0, len};
    buf[0] = '\0';
    figure f[NFIGURES];
    figures(a, f);
    for (int i = 0; i < NFIGURES; i++) {
        put(&o, "# HELP sightline_%s %s\n# TYPE sightline_%s %s\nsightline_%s ", f[i].name,
            f[i].help, f[i].name, f[i].counter ? "counter" : "gauge", f[i].name);
        put_value(&o, f[i].v);
    }
    return o.n;
}

int sl_app_reload(sl_app *a, char *outp, size_t outlen)
{
    out_text o = {outp, 0, outlen};
    outp[0] = '\0';
    int failed = 0;
    for (uint32_t k = 0; k < a->nspaces; k++) {
        aspace *sp = a->spaces[k];
        if (!sp->h)
            continue;
        char err[4096];
        if (sl_lua_reload(sp->h, NULL, err, sizeof err)) {
            put(&o, "space %s: reload failed, the running scripts stay:\n%s\n", sp->name, err);
            failed = 1;
        } else {
            sl_lua_stats st;
            sl_lua_get_stats(sp->h, &st);
            put(&o, "space %s: scripts %s reloaded (version %llu)\n", sp->name, st.dir,
                (unsigned long long)st.version);
        }
    }
    if (!a->nspaces)
        put(&o, "no spaces: nothing to reload\n");
    return failed;
}

static void why(out_text *o, aspace *sp, uint64_t w, uint64_t t)
{
    sl_entity_info wi, ti;
    bool hw = sl_space_get(sp->s, w, &wi) == 0, ht = sl_space_get(sp->s, t, &ti) == 0;
    if (!hw || !ht) {
        put(o, "error: %s\n", !hw ? "no such watcher" : "no such target");
        return;
    }
    float dx = ti.x - wi.x, dy = ti.y - wi.y, d2 = dx * dx + dy * dy;
    float r2 = wi.radius * wi.radius;
    bool layer_ok = (wi.mask >> ti.layer) & 1u;
    put(o, "watcher %llu at (%g, %g) radius %g layer %u mask 0x%08x\n",
        (unsigned long long)w, (double)wi.x, (double)wi.y, (double)wi.radius, wi.layer, wi.mask);
    put(o, "target %llu at (%g, %g) layer %u\n", (unsigned long long)t, (double)ti.x,
        (double)ti.y, ti.layer);
    put(o, "distance %g (squared %g), radius squared %g: %s\n", sqrt((double)d2), (double)d2,
        (double)r2, d2 <= r2 ? "in range" : "out of range (or in the hysteresis band)");
    put(o, "layer: target layer %u is %s the watcher's mask\n", ti.layer,
        layer_ok ? "in" : "NOT in");
    if (w == t)
        put(o, "an entity never sees itself\n");
    if (sp->h) {
        sl_lua_stats st;
        sl_lua_get_stats(sp->h, &st);
        put(o, "scripts: %s, version %llu%s%s\n", st.dir, (unsigned long long)st.version,
            st.faulted ? ", FAULTED: " : "", st.faulted ? st.fault : "");
        bool verdict = false;
        int r = sl_lua_ask(sp->h, w, t, &verdict);
        put(o, "rule: %s\n", r == 1 ? (verdict ? "visible(w, t) says true" : "visible(w, t) says false")
                             : r == 0 ? "none (distance and layers only)" : "visible(w, t) raised an error (see the log)");
    }
    put(o, "at the last tick: %s\n", sl_space_sees(sp->s, w, t) ? "VISIBLE" : "not visible");
}

typedef struct rec_ctx {
    sl_app *a;
    aspace *sp;
    uint64_t id;
} rec_ctx;

static void rec_one_prop(void *ud, const char *key, const sl_value *v)
{
    rec_ctx *r = ud;
    rec_prop(r->a, r->sp, r->id, key, v);
}

static void rec_entity(void *ud, const sl_entity_info *e)
{
    rec_ctx *r = ud;
    rec(r->a, r->sp, "add %llu %.9g %.9g %.9g %u 0x%x\n", (unsigned long long)e->id,
        (double)e->x, (double)e->y, (double)e->radius, e->layer, e->mask);
    if (r->sp->h) {
        r->id = e->id;
        sl_lua_props_each(r->sp->h, e->id, rec_one_prop, r);
    }
}

/*
 * `record start FILE [SPACE]`: writes the space as it is now (its entities and props), then
 * every change and tick as it happens, as a trace that `sightline-replay --scripts DIR`
 * replays to the same events. `record stop` closes it.
 */
static int record(sl_app *a, out_text *o, const char *line)
{
    char verb[16] = "", path[256] = "", name[MAX_NAME + 1] = "";
    int n = sscanf(line, "%*s %15s %255s %64s", verb, path, name);
    if (n >= 1 && !strcmp(verb, "stop")) {
        if (!a->rec) {
            put(o, "error: not recording\n");
            return 1;
        }
        fclose(a->rec);
        a->rec = NULL;
        put(o, "recording %s stopped\n", a->rec_path);
        return 0;
    }
    if (n < 2 || strcmp(verb, "start")) {
        put(o, "error: usage: record start FILE [SPACE] | record stop\n");
        return 1;
    }
    if (a->rec) {
        put(o, "error: already recording %s\n", a->rec_path);
        return 1;
    }
    aspace *sp = n == 3 ? find_space_c(a, name) : a->nspaces == 1 ? a->spaces[0] : NULL;
    if (!sp) {
        put(o, "error: %s\n", n == 3 ? "no such space" : "name the space to record");
        return 1;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        put(o, "error: %s: %s\n", path, strerror(errno));
        return 1;
    }
    a->rec = f;
    a->rec_serial = sp->serial;
    snprintf(a->rec_path, sizeof a->rec_path, "%s", path);
    const sl_space_config *cfg = sl_space_config_of(sp->s);
    char cell[32] = "";
    if (cfg->cell > 0)
        snprintf(cell, sizeof cell, " cell=%.9g", (double)cfg->cell);
    rec(a, sp, "# recorded by sightline from space %s (tick %llu); replay with the same "
               "scripts: sightline-replay --scripts DIR%s FILE\n", sp->name,
        (unsigned long long)sp->ticks, cfg->stay ? " --stay" : "");
    rec(a, sp, "space %.9g %.9g%s index=%s hysteresis=%.9g\n", (double)cfg->width,
        (double)cfg->height, cell, sl_index_kind_name(cfg->index), (double)cfg->hysteresis);
    rec_ctx r = {a, sp, 0};
    sl_space_each(sp->s, rec_entity, &r);
    /* The entities above are present at the last tick: a tick makes the replay agree. */
    rec(a, sp, "tick\n# ---- live from here\n");
    put(o, "recording space %s to %s\n", sp->name, path);
    return 0;
}

int sl_app_command(sl_app *a, const char *line, char *outp, size_t outlen)
{
    out_text o = {outp, 0, outlen};
    outp[0] = '\0';
    char cmd[32] = "", arg1[128] = "";
    unsigned long long x = 0, y = 0;
    int n = sscanf(line, "%31s %127s %llu %llu", cmd, arg1, &x, &y);
    if (n <= 0 || !strcmp(cmd, "help")) {
        put(&o, "commands: stats [reset] | spaces | create SPACE WIDTH HEIGHT [OPTIONS] | "
                "record start FILE [SPACE] | record stop | entity SPACE ID | "
                "why SPACE WATCHER TARGET | reload | shutdown | help\n");
        return n <= 0;
    }
    if (!strcmp(cmd, "stats")) {
        if (!strcmp(arg1, "reset")) {
            a->hist_n = 0;      /* tick times from now on (e.g. after a bulk load) */
            put(&o, "tick times reset\n");
            return 0;
        }
        stats(a, &o);
        return 0;
    }
    if (!strcmp(cmd, "spaces")) {
        for (uint32_t k = 0; k < a->nspaces; k++) {
            sl_space_stats st;
            sl_space_get_stats(a->spaces[k]->s, &st);
            put(&o, "%s entities %u pairs %llu index %s cell %g ticks %llu tick_ms %g",
                a->spaces[k]->name, st.entities, (unsigned long long)st.pairs,
                sl_index_kind_name(st.index), (double)st.cell,
                (unsigned long long)a->spaces[k]->ticks,
                a->spaces[k]->period_ms > 0 ? a->spaces[k]->period_ms : a->cfg.tick_ms);
            if (a->spaces[k]->h) {
                sl_lua_stats ls;
                sl_lua_get_stats(a->spaces[k]->h, &ls);
                put(&o, " scripts %s v%llu%s", ls.dir, (unsigned long long)ls.version,
                    ls.faulted ? " FAULTED" : "");
            }
            put(&o, "\n");
        }
        if (!a->nspaces)
            put(&o, "no spaces\n");
        return 0;
    }
    if (!strcmp(cmd, "reload"))
        return sl_app_reload(a, outp, outlen);
    if (!strcmp(cmd, "record"))
        return record(a, &o, line);
    if (!strcmp(cmd, "create")) {
        float w = 0, h = 0;
        int used = 0;
        if (sscanf(line, "%*s %*s %f %f%n", &w, &h, &used) != 2) {
            put(&o, "error: usage: create SPACE WIDTH HEIGHT [cell=C] [index=grid|quadtree|auto] "
                    "[hysteresis=H] [stay]\n");
            return 1;
        }
        sl_space_config cfg = {.width = w, .height = h, .index = SL_INDEX_AUTO};
        /* Options after the size: key=value words, and `stay`. */
        char opt[64];
        for (const char *p = line + used; sscanf(p, " %63s%n", opt, &used) == 1; p += used) {
            char *eq = strchr(opt, '=');
            bool ok = true;
            if (!strcmp(opt, "stay"))
                cfg.stay = true;
            else if (eq && !strncmp(opt, "cell=", 5))
                cfg.cell = strtof(eq + 1, NULL);
            else if (eq && !strncmp(opt, "hysteresis=", 11))
                cfg.hysteresis = strtof(eq + 1, NULL);
            else if (eq && !strncmp(opt, "index=", 6))
                ok = sl_index_kind_parse(eq + 1, &cfg.index) == 0;
            else
                ok = false;
            if (!ok) {
                put(&o, "error: create: unknown option %s\n", opt);
                return 1;
            }
        }
        sl_str name = {arg1, strlen(arg1)};
        char msg[512];
        const char *code = space_create(a, &name, &cfg, msg, sizeof msg);
        if (code) {
            put(&o, "error: %s: %s\n", code, msg);
            return 1;
        }
        put(&o, "space %s created\n", arg1);
        return 0;
    }
    if (!strcmp(cmd, "shutdown")) {
        put(&o, "shutting down\n");
        sl_app_shutdown(a);
        return 0;
    }
    if (!strcmp(cmd, "entity") || !strcmp(cmd, "why")) {
        aspace *sp = find_space_c(a, arg1);
        if (!sp || n < (cmd[0] == 'e' ? 3 : 4)) {
            put(&o, "error: %s\n", !sp ? "no such space" : "usage: entity SPACE ID | why SPACE W T");
            return 1;
        }
        if (cmd[0] == 'w') {
            why(&o, sp, x, y);
            return o.p[0] == 'e';
        }
        sl_entity_info info;
        if (sl_space_get(sp->s, x, &info)) {
            put(&o, "error: no entity %llu in %s\n", x, sp->name);
            return 1;
        }
        uint32_t owner = sl_idmap_get(&sp->owners, x);
        put(&o, "entity %llu space %s x %g y %g radius %g layer %u mask 0x%08x sees %u owner %s%u\n",
            x, sp->name, (double)info.x, (double)info.y, (double)info.radius, info.layer,
            info.mask, info.sees, owner == UINT32_MAX ? "none" : "session ",
            owner == UINT32_MAX ? 0 : owner - 1);
        return 0;
    }
    put(&o, "error: unknown command %s (try help)\n", cmd);
    return 1;
}

/* ---- spaces and entities defined elsewhere (etcd: cluster.c) ------------------------------ */

/* A space's own tick period: a multiple of the server's tick is exact; 0 or less than the
 * server's tick: every server tick. */
static void set_period(sl_app *a, aspace *sp, double tick_ms)
{
    sp->period_ms = tick_ms > a->cfg.tick_ms ? tick_ms : 0;
    sp->due_ms = now_ms();
}

int sl_app_define_space(sl_app *a, const char *name, const sl_space_config *cfg,
                        const char *scripts, double tick_ms, char *err, size_t len)
{
    aspace *sp = find_space_c(a, name);
    if (!sp) {
        sl_str n = {name, strlen(name)};
        const char *code = space_create_in(a, &n, cfg, scripts ? scripts : a->cfg.scripts,
                                           err, len);
        if (!code)
            set_period(a, find_space_c(a, name), tick_ms);
        return code ? -1 : 0;
    }
    set_period(a, sp, tick_ms);
    /* Reconfigure in place: the index (kind, cell) is rebuilt keeping entities and pairs;
     * the map, hysteresis and stay are fixed for a space's life. */
    const sl_space_config *old = sl_space_config_of(sp->s);
    if (old->width != cfg->width || old->height != cfg->height ||
        old->hysteresis != cfg->hysteresis || old->stay != cfg->stay) {
        snprintf(err, len, "width, height, hysteresis and stay cannot change on a running "
                 "space (drop it and define it again)");
        return -1;
    }
    if (sl_space_set_index(sp->s, cfg->index, cfg->cell)) {
        snprintf(err, len, "%s", sl_space_error(sp->s));
        return -1;
    }
    if (scripts && sp->h) {
        char why[2048];
        sl_lua_stats st;
        sl_lua_get_stats(sp->h, &st);
        if (strcmp(st.dir, scripts) && sl_lua_reload(sp->h, scripts, why, sizeof why)) {
            snprintf(err, len, "scripts %.100s: %.300s", scripts, why);
            return -1;
        }
    }
    logf_(a, "space %s reconfigured (index %s, cell %g)", name,
          sl_index_kind_name(cfg->index), (double)cfg->cell);
    return 0;
}

int sl_app_undefine_space(sl_app *a, const char *name)
{
    aspace *sp = find_space_c(a, name);
    if (!sp)
        return -1;
    space_drop(a, sp);
    return 0;
}

int sl_app_static_put(sl_app *a, const char *space, uint64_t id, float x, float y, float r,
                      uint32_t layer, uint32_t mask, char *err, size_t len)
{
    aspace *sp = find_space_c(a, space);
    if (!sp) {
        snprintf(err, len, "no space %s", space);
        return -1;
    }
    /* A put cancels a pending delete of the same entity. */
    for (size_t i = 0; i < a->npdel; i++)
        if (a->pdel[i].serial == sp->serial && a->pdel[i].id == id)
            a->pdel[i--] = a->pdel[--a->npdel];
    uint32_t owner = sl_idmap_get(&sp->owners, id);
    int rc;
    if (owner == UINT32_MAX) {
        if ((rc = sl_space_add(sp->s, id, x, y, r, layer, mask)) ||
            (rc = sl_idmap_put(&sp->owners, NULL, id, STATIC_OWNER))) {
            if (!rc || rc == SL_ENOMEM)
                sl_space_remove(sp->s, id);
            snprintf(err, len, "%s", sl_space_error(sp->s));
            return -1;
        }
        rec(a, sp, "add %llu %.9g %.9g %.9g %u 0x%x\n", (unsigned long long)id, (double)x,
            (double)y, (double)r, layer, mask);
        return 0;
    }
    if (owner != STATIC_OWNER) {
        snprintf(err, len, "entity %llu belongs to a client", (unsigned long long)id);
        return -1;
    }
    /* An update: check everything first, so that a bad document changes nothing. */
    if (!(x >= 0 && x < sl_space_config_of(sp->s)->width && y >= 0 &&
          y < sl_space_config_of(sp->s)->height) || !(r >= 0) || layer > 31) {
        snprintf(err, len, "position outside the map, bad radius or layer");
        return -1;
    }
    sl_space_move(sp->s, id, x, y);
    sl_space_set_radius(sp->s, id, r);
    sl_space_set_layer(sp->s, id, layer);
    sl_space_set_mask(sp->s, id, mask);
    rec(a, sp, "move %llu %.9g %.9g\nradius %llu %.9g\nlayer %llu %u\nmask %llu 0x%x\n",
        (unsigned long long)id, (double)x, (double)y, (unsigned long long)id, (double)r,
        (unsigned long long)id, layer, (unsigned long long)id, mask);
    return 0;
}

int sl_app_static_prop(sl_app *a, const char *space, uint64_t id, const char *key,
                       const sl_value *v)
{
    aspace *sp = find_space_c(a, space);
    if (!sp || !sp->h)
        return -1;
    return sl_lua_set_prop(sp->h, id, key, v);
}

void sl_app_static_delete(sl_app *a, const char *space, uint64_t id, double grace_ms)
{
    aspace *sp = find_space_c(a, space);
    if (!sp || sl_idmap_get(&sp->owners, id) != STATIC_OWNER)
        return;
    if (a->npdel == a->cappdel) {
        size_t cap = a->cappdel ? a->cappdel * 2 : 64;
        struct pending_delete *p = realloc(a->pdel, cap * sizeof *p);
        if (!p)
            return;
        a->pdel = p;
        a->cappdel = cap;
    }
    a->pdel[a->npdel++] = (struct pending_delete){sp->serial, id, now_ms() + grace_ms};
}

void sl_app_set_cluster_status(sl_app *a, const char *text)
{
    snprintf(a->cluster_status, sizeof a->cluster_status, "%s", text);
}

size_t sl_app_space_names(const sl_app *a, const char **names, size_t max)
{
    size_t n = 0;
    for (uint32_t k = 0; k < a->nspaces && n < max; k++)
        names[n++] = a->spaces[k]->name;
    return n;
}
