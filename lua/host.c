/*
 * host.c: the C half of the script host (lua/lib/runtime.lua is the Lua half).
 *
 * One LuaJIT VM per host. The runtime (trusted, embedded at build time) builds a sandbox
 * per script set and runs the batch loops; C calls into Lua once per batch of pairs or
 * events, never once per pair.
 *
 * Containment:
 * - Errors: every call goes through lua_pcall with a traceback handler. An error inside a
 *   batch stops the batch at the pair or event that raised (the runtime notes its index in
 *   the shared block); the host logs it (once per distinct message), counts it against the
 *   designer function, and resumes the batch after it. A failing `visible` keeps the pair's
 *   previous verdict.
 * - Time: a count hook cannot stop a loop that LuaJIT compiled (hooks do not fire inside
 *   traces, and Debian's LuaJIT is built without LUAJIT_ENABLE_CHECKHOOK). Instead the
 *   runtime's loader instruments designer code: a check at every loop body, function entry
 *   and goto, which the JIT compiles into the trace as a decrement of a counter in the
 *   shared block; every CHECK_EVERY checks it calls api_check(), which compares the clock
 *   with the tick's deadline. Past it the set is faulted and every later check raises, so
 *   even a script that catches errors in a loop unwinds (its pcall re-raises too). This
 *   covers interpreted code as well, so no count hook is set: it would only slow the
 *   interpreter.
 * - Memory: the VM runs on our allocator (LuaJIT's GC64 mode allows that), which refuses
 *   to grow past the limit while script code runs; the script then gets "not enough
 *   memory" and the set is faulted. Host work outside scripts is not limited, so the host
 *   can always report and recover.
 * A faulted set is not called again (the rule keeps every pair's verdict, new pairs stay
 * unseen) until a reload succeeds.
 */
#include "lua/host.h"

#include "base/clock.h"
#include "base/hash.h"
#include "base/vec.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime_lua.h"    /* sl__runtime_lua[], generated from lib/runtime.lua */

/* Shared with the runtime through the FFI: keep in step with the cdef in runtime.lua. */
typedef struct sl_lua_shared {
    int32_t budget;
    int32_t faulted;
    int32_t pos;
    int32_t fn;
} sl_lua_shared;

typedef struct sl_lua_api {
    void *host, *space;
    int (*get)(void *space, uint64_t id, sl_entity_info *out);
    int (*check)(void *host);
    int (*emit)(void *host, uint64_t watcher, const char *name, size_t nlen,
                const char *payload, size_t plen);
    int (*set_radius)(void *space, uint64_t id, float r);
    int (*set_layer)(void *space, uint64_t id, uint32_t layer);
    int (*touch)(void *space, uint64_t id);
    const char *(*error)(void *space);
    void (*log)(void *host, const char *msg);
} sl_lua_api;

enum { RT_BUILD, RT_SWAP, RT_DROP, RT_JUDGE, RT_DISPATCH, RT_ON_TICK, RT_SET_TICK,
       RT_SET_PROP, RT_FORGET, RT_APPLY, RT_PROPS, RT_COUNT };
static const char *const rt_names[RT_COUNT] = {
    "build", "swap", "drop", "judge", "dispatch", "on_tick", "set_tick", "set_prop",
    "forget", "apply", "props",
};

#define SEEN_MAX 4096u          /* distinct error messages remembered (then: not logged) */
#define EMIT_MAX (1u << 20)     /* custom events per tick */
#define EMIT_BYTES (64u << 20)  /* their names and payloads per tick */

struct sl_lua {
    lua_State *L;
    sl_space *space;
    sl_lua_config cfg;
    char dir[512];
    sl_lua_shared *sh;
    sl_lua_api api;
    int rt[RT_COUNT];           /* registry refs to the runtime's functions; owner: host */
    int set_ref;                /* registry ref to the running set; owner: host */
    bool has_visible, has_handlers;

    size_t mem_used, mem_limit;
    bool limit_on, mem_hit;
    bool building;              /* a reload's build runs: overruns fail it, not the set */
    double deadline;            /* sl_now_ms() past which the running call stops */
    double budget;              /* ms of script time per tick (or per reload) */
    double used;                /* ms of script time spent this tick */

    uint64_t ticks;
    sl_lua_stats st;
    uint64_t *seen;             /* hashes of logged error messages (open addressing) */
    uint32_t nseen;

    sl_vec emits;               /* sl_lua_emit: this tick's custom events */
    sl_vec arena;               /* bytes: their names and payloads, each NUL-terminated */
};

static void logf_(sl_lua *h, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (h->cfg.log)
        h->cfg.log(h->cfg.log_ud, buf);
    else
        fprintf(stderr, "sightline: scripts: %s\n", buf);
}

const char *sl_lua_fn_name(sl_lua_fn fn)
{
    static const char *const names[SL_FN_COUNT] = {
        "host", "visible", "on_enter", "on_leave", "on_stay", "on_tick", "selftest",
        "on_reload", "load",
    };
    return fn < SL_FN_COUNT ? names[fn] : "?";
}

/* ---- the VM's allocator: counts, and refuses growth past the limit in script code ------ */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sl_lua *h = ud;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        h->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && h->limit_on && h->mem_used + (nsize - osize) > h->mem_limit) {
        h->mem_hit = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p)
        h->mem_used = h->mem_used - osize + nsize;
    return p;
}

static int l_panic(lua_State *L)
{
    fprintf(stderr, "sightline: unprotected Lua error: %s\n", lua_tostring(L, -1));
    abort();
}

/* ---- what the runtime calls through the FFI --------------------------------------------- */

static void fault(sl_lua *h, const char *why)
{
    if (!h->st.faulted) {
        h->st.faulted = true;
        snprintf(h->st.fault, sizeof h->st.fault, "%s", why);
        logf_(h, "script set %s faulted: %s; it stays stopped until a reload succeeds",
              h->dir, why);
    }
    h->sh->faulted = 1;
}

static int api_check(void *host)
{
    sl_lua *h = host;
    if (h->sh->faulted)
        return 1;
    if (sl_now_ms() > h->deadline) {
        if (h->building) {
            h->sh->faulted = 1;     /* unwinds the build; load_set reports it */
            return 1;
        }
        char why[128];
        snprintf(why, sizeof why, "ran past its time budget of %.0f ms", h->budget);
        fault(h, why);
        return 1;
    }
    return 0;
}

static int api_emit(void *host, uint64_t watcher, const char *name, size_t nlen,
                    const char *payload, size_t plen)
{
    sl_lua *h = host;
    size_t off = h->arena.n;
    if (h->emits.n == EMIT_MAX || off + nlen + plen + 2 > EMIT_BYTES)
        return -1;
    sl_lua_emit *e = sl_vec_push(&h->emits, sizeof *e);
    if (!e)
        return -1;
    char *p = sl_vec_extend(&h->arena, 1, nlen + plen + 2);
    if (!p) {
        h->emits.n--;
        return -1;
    }
    memcpy(p, name, nlen);
    p[nlen] = '\0';
    memcpy(p + nlen + 1, payload, plen);
    p[nlen + 1 + plen] = '\0';
    /* Offsets now, pointers when the tick hands them out (the arena may move). */
    *e = (sl_lua_emit){
        .watcher = watcher, .name = (const char *)(uintptr_t)off, .name_len = nlen,
        .payload = (const char *)(uintptr_t)(off + nlen + 1), .payload_len = plen,
    };
    h->st.emits++;
    return 0;
}

static void api_log(void *host, const char *msg)
{
    logf_(host, "%s", msg);
}

static int api_get(void *space, uint64_t id, sl_entity_info *out)
{
    return sl_space_get(space, id, out);
}
static int api_set_radius(void *space, uint64_t id, float r)
{
    return sl_space_set_radius(space, id, r);
}
static int api_set_layer(void *space, uint64_t id, uint32_t layer)
{
    return sl_space_set_layer(space, id, layer);
}
static int api_touch(void *space, uint64_t id)
{
    return sl_space_touch(space, id);
}
static const char *api_error(void *space)
{
    return sl_space_error(space);
}

/* ---- calling into Lua ------------------------------------------------------------------- */

/* The message handler: the error with a traceback (memory errors never get here). */
static int l_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

/* Whether msg is new (remembering it); after SEEN_MAX distinct messages, none is. */
static bool first_time(sl_lua *h, const char *msg)
{
    if (!h->seen && !(h->seen = calloc(2 * SEEN_MAX, sizeof(uint64_t))))
        return true;
    /* 0 marks an empty slot, so a message hashing to 0 is remembered as 1. */
    uint64_t x = sl_fnv1a64(SL_FNV1A64_BASIS, msg, strlen(msg));
    x += !x;
    for (uint32_t i = (uint32_t)x & (2 * SEEN_MAX - 1);; i = (i + 1) & (2 * SEEN_MAX - 1)) {
        if (h->seen[i] == x)
            return false;
        if (!h->seen[i]) {
            if (h->nseen == SEEN_MAX)
                return false;
            h->seen[i] = x;
            h->nseen++;
            return true;
        }
    }
}

/*
 * Calls runtime function `which` with the nargs arguments on the stack, scripts' limits on.
 * Returns 0, or the Lua status after logging and counting the error (message, traceback,
 * the designer function that raised) and faulting the set on a memory or time overrun; then
 * the message is left in h->st.fault or, if errmsg, copied there.
 */
static int rt_call(sl_lua *h, int which, int nargs, int nres, char *errmsg, size_t errlen)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, l_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->rt[which]);
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);        /* [msgh, fn, args...] */
    h->sh->fn = SL_FN_NONE;
    h->mem_hit = false;
    /* Only designer code is limited: host work must always be able to finish. */
    h->limit_on = which == RT_BUILD || which == RT_JUDGE || which == RT_DISPATCH ||
                  which == RT_ON_TICK;
    /* The budget counts script time only: the core's part of the tick is not charged. */
    double t0 = sl_now_ms();
    h->deadline = t0 + (h->budget - h->used);
    int rc = lua_pcall(L, nargs, nres, base + 1);
    if (h->limit_on)
        h->used += sl_now_ms() - t0;
    h->limit_on = false;
    lua_remove(L, base + 1);
    if (rc == 0)
        return 0;
    const char *msg = lua_tostring(L, -1);
    if (!msg)
        msg = "(error object is not a string)";
    sl_lua_fn fn = (sl_lua_fn)h->sh->fn;
    if (fn >= SL_FN_COUNT)
        fn = SL_FN_NONE;
    h->st.errors[fn]++;
    if (errmsg && errlen)
        snprintf(errmsg, errlen, "%s", msg);
    else if (first_time(h, msg))
        logf_(h, "error in %s: %s", sl_lua_fn_name(fn), msg);
    if (rc == LUA_ERRMEM || h->mem_hit) {
        char why[128];
        snprintf(why, sizeof why, "went over its memory limit of %zu bytes", h->mem_limit);
        if (!errmsg)
            fault(h, why);
        else if (errlen)
            snprintf(errmsg, errlen, "%s (in %s)", why, sl_lua_fn_name(fn));
    }
    lua_pop(L, 1);
    if (h->mem_hit && !errmsg) {
        /* Let the set's memory go: it is not called again until a reload. */
        rt_call(h, RT_DROP, 0, 0, NULL, 0);
        luaL_unref(L, LUA_REGISTRYINDEX, h->set_ref);
        h->set_ref = LUA_NOREF;
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
    return rc;
}

static void begin_scripts(sl_lua *h)
{
    h->used = 0;
    h->sh->budget = 1;      /* the first check looks at the clock */
}

/* Runs a batch loop (judge or dispatch) over n items, resuming after each error. */
static void run_batch(sl_lua *h, int which, const void *items, size_t n, void *out)
{
    size_t start = 0;
    while (start < n && !h->sh->faulted) {
        lua_pushlightuserdata(h->L, (void *)items);
        lua_pushnumber(h->L, (lua_Number)n);
        if (which == RT_JUDGE)
            lua_pushlightuserdata(h->L, out);
        lua_pushnumber(h->L, (lua_Number)start);
        if (rt_call(h, which, which == RT_JUDGE ? 4 : 3, 0, NULL, 0) == 0)
            return;
        start = (size_t)h->sh->pos + 1;
    }
}

static void rule_cb(void *ud, const sl_rule_pair *pairs, size_t n, uint8_t *verdict)
{
    sl_lua *h = ud;
    if (h->sh->faulted)
        return;         /* verdicts stay as they were */
    h->st.rule_pairs += n;
    run_batch(h, RT_JUDGE, pairs, n, verdict);
}

/* ---- script sets ------------------------------------------------------------------------ */

/* Builds a set from dir; on success swaps it in. */
static int load_set(sl_lua *h, const char *dir, char *err, size_t errlen)
{
    char msg[4096];
    begin_scripts(h);
    h->sh->faulted = 0;
    h->building = true;
    lua_pushstring(h->L, dir);
    int rc = rt_call(h, RT_BUILD, 1, 1, msg, sizeof msg);
    h->building = false;
    char pre[96] = "";
    if (rc && h->sh->faulted)
        snprintf(pre, sizeof pre, "ran past its time budget of %.0f ms: ", h->budget);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s%s", pre, msg);
        logf_(h, "loading %s failed; %s: %s%s", dir,
              h->set_ref == LUA_NOREF ? "no scripts run" : "the running scripts stay", pre, msg);
        h->st.reload_failures++;
        /* A failed build must not clear the running set's fault. */
        h->sh->faulted = h->st.faulted;
        lua_gc(h->L, LUA_GCCOLLECT, 0);
        return SL_EINVAL;
    }
    /* Swap: the new set runs from the next tick. */
    lua_pushvalue(h->L, -1);
    int ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    if (rt_call(h, RT_SWAP, 1, 2, msg, sizeof msg)) {
        luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
        if (err && errlen)
            snprintf(err, errlen, "%s", msg);
        return SL_ENOMEM;
    }
    bool vis = lua_toboolean(h->L, -2);
    h->has_handlers = lua_toboolean(h->L, -1);
    lua_pop(h->L, 2);
    if (h->set_ref != LUA_NOREF)
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->set_ref);
    h->set_ref = ref;
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    h->st.version++;
    h->st.faulted = false;
    h->st.fault[0] = '\0';
    h->sh->faulted = 0;
    if (vis || h->has_visible)
        sl_space_set_rule(h->space, vis ? rule_cb : NULL, h);     /* re-judges every pair */
    h->has_visible = vis;
    lua_gc(h->L, LUA_GCCOLLECT, 0);
    return 0;
}

int sl_lua_new(sl_lua **out, sl_space *space, const sl_lua_config *cfg, char *err,
               size_t errlen)
{
    sl_lua *h = calloc(1, sizeof *h);
    if (!h)
        return SL_ENOMEM;
    h->space = space;
    h->cfg = *cfg;
    h->budget = cfg->budget_ms > 0 ? cfg->budget_ms : 200;
    h->mem_limit = cfg->mem_limit ? cfg->mem_limit : (size_t)256 << 20;
    h->set_ref = LUA_NOREF;
    for (int i = 0; i < RT_COUNT; i++)
        h->rt[i] = LUA_NOREF;
    h->sh = calloc(1, sizeof *h->sh);
    h->L = h->sh ? lua_newstate(l_alloc, h) : NULL;
    if (!h->L) {
        sl_lua_free(h);
        return SL_ENOMEM;
    }
    lua_atpanic(h->L, l_panic);
    h->api = (sl_lua_api){
        .host = h, .space = space, .get = api_get, .check = api_check, .emit = api_emit,
        .set_radius = api_set_radius, .set_layer = api_set_layer, .touch = api_touch,
        .error = api_error, .log = api_log,
    };
    lua_State *L = h->L;
    luaL_openlibs(L);
    if (luaL_loadbuffer(L, (const char *)sl__runtime_lua, sizeof sl__runtime_lua,
                        "=runtime.lua")) {
        snprintf(err, errlen, "runtime: %s", lua_tostring(L, -1));
        sl_lua_free(h);
        return SL_EINVAL;
    }
    lua_pushlightuserdata(L, h->sh);
    lua_pushlightuserdata(L, &h->api);
    lua_pushboolean(L, cfg->unsafe);
    if (lua_pcall(L, 3, 1, 0) || !lua_istable(L, -1)) {
        snprintf(err, errlen, "runtime: %s", lua_tostring(L, -1));
        sl_lua_free(h);
        return SL_EINVAL;
    }
    for (int i = 0; i < RT_COUNT; i++) {
        lua_getfield(L, -1, rt_names[i]);
        h->rt[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    int rc = load_set(h, cfg->dir, err, errlen);
    if (rc) {
        sl_lua_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void sl_lua_free(sl_lua *h)
{
    if (!h)
        return;
    if (h->has_visible)
        sl_space_set_rule(h->space, NULL, NULL);
    if (h->L)
        lua_close(h->L);
    free(h->sh);
    free(h->seen);
    sl_vec_free(&h->emits);
    sl_vec_free(&h->arena);
    free(h);
}

int sl_lua_reload(sl_lua *h, const char *dir, char *err, size_t errlen)
{
    char d[512];
    snprintf(d, sizeof d, "%s", dir ? dir : h->dir);
    return load_set(h, d, err, errlen);
}

/* ---- the tick --------------------------------------------------------------------------- */

typedef struct tick_ctx {
    sl_lua *h;
    sl_event_sink sink;
    void *ud;
} tick_ctx;

static void event_sink(void *ud, const sl_event *ev, size_t n)
{
    tick_ctx *t = ud;
    sl_lua *h = t->h;
    if (!h->sh->faulted && h->set_ref != LUA_NOREF && h->has_handlers) {
        h->st.handler_calls += n;
        run_batch(h, RT_DISPATCH, ev, n, NULL);
    }
    if (t->sink)
        t->sink(t->ud, ev, n);
}

void sl_lua_dispatch(sl_lua *h, const sl_event *events, size_t n)
{
    begin_scripts(h);
    if (!h->sh->faulted && h->set_ref != LUA_NOREF && h->has_handlers) {
        h->st.handler_calls += n;
        run_batch(h, RT_DISPATCH, events, n, NULL);
    }
}

int sl_lua_tick(sl_lua *h, sl_event_sink sink, void *ud, sl_lua_emit_sink esink, void *eud)
{
    tick_ctx t = {h, sink, ud};
    h->ticks++;
    h->emits.n = 0;
    h->arena.n = 0;
    begin_scripts(h);
    lua_pushnumber(h->L, (lua_Number)h->ticks);
    rt_call(h, RT_SET_TICK, 1, 0, NULL, 0);
    int rc = sl_space_tick(h->space, event_sink, &t);
    if (!h->sh->faulted && h->set_ref != LUA_NOREF) {
        lua_pushnumber(h->L, (lua_Number)h->ticks);
        rt_call(h, RT_ON_TICK, 1, 0, NULL, 0);
    }
    if (esink && h->emits.n) {
        sl_lua_emit *ev = h->emits.p;
        const char *arena = h->arena.p;
        for (size_t i = 0; i < h->emits.n; i++) {
            ev[i].name = arena + (uintptr_t)ev[i].name;
            ev[i].payload = arena + (uintptr_t)ev[i].payload;
        }
        esink(eud, ev, h->emits.n);
    }
    /* The changes scripts queued apply now, for the next tick (even from a faulted set:
     * they were asked for before it stopped). */
    rt_call(h, RT_APPLY, 0, 0, NULL, 0);
    return rc;
}

/* ---- props ------------------------------------------------------------------------------ */

/* Pushes id as scripts see it: a number below 2^53, else its decimal string. */
static void push_id(lua_State *L, uint64_t id)
{
    if (id < (1ULL << 53)) {
        lua_pushnumber(L, (lua_Number)id);
    } else {
        char buf[24];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)id);
        lua_pushstring(L, buf);
    }
}

int sl_lua_set_prop(sl_lua *h, uint64_t id, const char *key, const sl_value *v)
{
    sl_entity_info info;
    if (sl_space_get(h->space, id, &info))
        return SL_ENOENT;
    if (!key || !*key)
        return SL_EINVAL;
    lua_State *L = h->L;
    push_id(L, id);
    lua_pushstring(L, key);
    switch (v ? v->type : SL_VALUE_NIL) {
    case SL_VALUE_BOOL: lua_pushboolean(L, v->b); break;
    case SL_VALUE_NUMBER: lua_pushnumber(L, v->n); break;
    case SL_VALUE_STRING: lua_pushlstring(L, v->s, v->len); break;
    default: lua_pushnil(L); break;
    }
    /* Host work: not under the scripts' memory limit (rt_call only limits what it runs). */
    if (rt_call(h, RT_SET_PROP, 3, 0, NULL, 0))
        return SL_EINVAL;
    return sl_space_touch(h->space, id);
}

void sl_lua_forget(sl_lua *h, uint64_t id)
{
    push_id(h->L, id);
    rt_call(h, RT_FORGET, 1, 0, NULL, 0);
}

void sl_lua_props_each(sl_lua *h, uint64_t id,
                       void (*fn)(void *ud, const char *key, const sl_value *v), void *ud)
{
    lua_State *L = h->L;
    push_id(L, id);
    if (rt_call(h, RT_PROPS, 1, 1, NULL, 0))
        return;
    lua_pushnil(L);             /* [props, nil] */
    while (lua_next(L, -2)) {   /* [props, key, value] */
        if (lua_type(L, -2) == LUA_TSTRING) {
            sl_value v = {0};
            size_t len = 0;
            switch (lua_type(L, -1)) {
            case LUA_TBOOLEAN: v.type = SL_VALUE_BOOL; v.b = lua_toboolean(L, -1); break;
            case LUA_TNUMBER: v.type = SL_VALUE_NUMBER; v.n = lua_tonumber(L, -1); break;
            case LUA_TSTRING:
                v.type = SL_VALUE_STRING;
                v.s = lua_tolstring(L, -1, &len);
                v.len = len;
                break;
            default: break;
            }
            fn(ud, lua_tostring(L, -2), &v);
        }
        lua_pop(L, 1);          /* [props, key] */
    }
    lua_pop(L, 1);
}

int sl_lua_ask(sl_lua *h, uint64_t watcher, uint64_t target, bool *verdict)
{
    if (!h->has_visible || h->sh->faulted || h->set_ref == LUA_NOREF)
        return 0;
    sl_rule_pair p = {watcher, target};
    uint8_t v = 2;      /* neither answer: the rule raised */
    begin_scripts(h);
    run_batch(h, RT_JUDGE, &p, 1, &v);
    if (v > 1)
        return -1;
    *verdict = v;
    return 1;
}

void sl_lua_get_stats(const sl_lua *h, sl_lua_stats *st)
{
    *st = h->st;
    st->mem_bytes = h->mem_used;
    snprintf(st->dir, sizeof st->dir, "%s", h->dir);
}
