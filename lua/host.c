/*
 * host.c: the script host's lifetime and its tick (the C half; lib/runtime.lua is the Lua
 * half, and host_impl.h says which file holds what).
 *
 * One LuaJIT VM per host, on the host's own allocator (budget.c), so that the memory limit
 * can apply. The runtime is trusted code, embedded at build time: it builds a sandbox per
 * script set and runs the batch loops. The host keeps a registry ref to each runtime
 * function it calls (h->rt) and one to the running set; it owns them all, and lua_close
 * lets them go.
 */
#include "lua/host_impl.h"

#include "base/log.h"

#include <lauxlib.h>
#include <lualib.h>

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime_lua.h"    /* sl__runtime_lua[], generated from lib/runtime.lua */

/* The fields of the runtime's table, in the order of the RT_* enum (host_impl.h). */
static const char *const rt_names[RT_COUNT] = {
    [RT_BUILD] = "build", [RT_SWAP] = "swap", [RT_DROP] = "drop", [RT_JUDGE] = "judge",
    [RT_DISPATCH] = "dispatch", [RT_ON_TICK] = "on_tick", [RT_SET_TICK] = "set_tick",
    [RT_SET_PROP] = "set_prop", [RT_REMOVING] = "removing", [RT_APPLY] = "apply",
    [RT_PROPS] = "props", [RT_CANCEL] = "cancel", [RT_STATE] = "state",
    [RT_SET_STATE] = "set_state", [RT_COLUMNS] = "columns", [RT_ADDED] = "added",
    [RT_HOOKS] = "hooks", [RT_REGIONS] = "regions",
};

void sl__lua_log(sl_lua *h, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (h->cfg.log)
        h->cfg.log(h->cfg.log_ud, buf);
    else
        sl_log("scripts: %s", buf);
}

const char *sl_lua_fn_name(sl_lua_fn fn)
{
    static const char *const names[SL_FN_COUNT] = {
        "host", "visible", "on_enter", "on_leave", "on_stay", "on_tick", "selftest",
        "on_reload", "load", "on_add", "on_remove", "on_prop", "on_region_enter",
        "on_region_leave",
    };
    return fn < SL_FN_COUNT ? names[fn] : "?";
}

/* ---- lifetime --------------------------------------------------------------------------- */

static int l_panic(lua_State *L)
{
    sl_log("unprotected Lua error: %s", lua_tostring(L, -1));
    abort();
}

/* Runs the embedded runtime and takes refs to its functions. Returns 0 or SL_ENOEXEC. */
static int open_runtime(sl_lua *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    luaL_openlibs(L);
    if (luaL_loadbuffer(L, (const char *)sl__runtime_lua, sizeof sl__runtime_lua,
                        "=runtime.lua")) {
        snprintf(err, errlen, "runtime: %s", lua_tostring(L, -1));
        return SL_ENOEXEC;
    }
    lua_pushlightuserdata(L, h->sh);
    lua_pushlightuserdata(L, &h->api);
    lua_pushboolean(L, h->cfg.unsafe);
    lua_pushstring(L, sl__lua_binding_cdef);
    sl__lua_push_strlib(h);
    if (lua_pcall(L, 5, 1, 0) || !lua_istable(L, -1)) {    // [chunk, 5 args] -> [RT]
        snprintf(err, errlen, "runtime: %s", lua_tostring(L, -1));
        return SL_ENOEXEC;
    }
    for (int i = 0; i < RT_COUNT; i++) {
        lua_getfield(L, -1, rt_names[i]);                   // [RT, fn]
        h->rt[i] = luaL_ref(L, LUA_REGISTRYINDEX);          // [RT]
    }
    lua_pop(L, 1);
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
    if (!h->cfg.max_entity_props)
        h->cfg.max_entity_props = 64;
    if (!h->cfg.max_entity_prop_bytes)
        h->cfg.max_entity_prop_bytes = 64u << 10;
    if (!h->cfg.max_prop_keys)
        h->cfg.max_prop_keys = 4096;
    h->budget = cfg->budget_ms > 0 ? cfg->budget_ms : 200;
    h->mem_limit = cfg->mem_limit ? cfg->mem_limit : (size_t)256 << 20;
    h->st.max_overruns = cfg->max_overruns ? cfg->max_overruns : 3;
    h->set_ref = LUA_NOREF;
    for (int i = 0; i < RT_COUNT; i++)
        h->rt[i] = LUA_NOREF;
    h->sh = calloc(1, sizeof *h->sh);
    h->L = h->sh ? lua_newstate(sl__lua_alloc, h) : NULL;
    if (!h->L) {
        sl_lua_free(h);
        return SL_ENOMEM;
    }
    lua_atpanic(h->L, l_panic);
    sl__lua_binding_init(h);
    int rc = sl__lua_watchdog_start(h);
    if (rc) {
        sl_lua_free(h);
        return rc;
    }
    rc = open_runtime(h, err, errlen);
    /* The saved state, if any, before the first build: it copies the state for the set. The
     * bytes are the caller's: no pointer to them is kept. */
    h->cfg.state = NULL;
    h->cfg.state_len = 0;
    if (!rc && cfg->state)
        rc = sl__lua_state_restore(h, cfg->state, cfg->state_len, err, errlen);
    if (!rc)
        rc = sl__lua_load_set(h, cfg->dir, err, errlen);
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
    sl__lua_watchdog_stop(h);
    free(h->sh);
    free(h->seen);
    sl_vec_free(&h->emits);
    sl_vec_free(&h->arena);
    sl_vec_free(&h->retouch);
    free(h);
}

void sl_lua_get_stats(const sl_lua *h, sl_lua_stats *st)
{
    *st = h->st;
    st->mem_bytes = h->mem_used;
    st->mem_script_bytes = h->mem_script;
    snprintf(st->dir, sizeof st->dir, "%s", h->dir);
}

/* ---- the tick --------------------------------------------------------------------------- */

/* After a cut: remembers the watchers and the targets of pairs[from..n), which the rule did
 * not judge, to touch one side of them after the tick (retouch). */
static void remember_unjudged(sl_lua *h, const sl_rule_pair *pairs, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        uint64_t *p = sl_vec_extend(&h->retouch, sizeof *p, 2);
        if (!p)
            return;     /* out of memory: those pairs keep their verdicts until touched */
        p[0] = pairs[i].watcher;
        p[1] = pairs[i].target;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts ids[0..n) (every other one from `side`: ids[side], ids[side + 2]...) into out and
 * drops repeats; returns how many are left. */
static size_t distinct(const uint64_t *ids, size_t n, int side, uint64_t *out)
{
    size_t k = 0;
    for (size_t i = (size_t)side; i < n; i += 2)
        out[k++] = ids[i];
    qsort(out, k, sizeof *out, cmp_u64);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (m == 0 || out[m - 1] != out[i])
            out[m++] = out[i];
    return m;
}

void sl__lua_rule(void *ud, const sl_rule_pair *pairs, size_t n, uint8_t *verdict)
{
    sl_lua *h = ud;
    if (h->sh->faulted) {
        if (h->cut)
            remember_unjudged(h, pairs, 0, n);
        return;         /* verdicts stay as they were */
    }
    h->st.rule_pairs += n;
    sl__lua_batch(h, RT_JUDGE, pairs, n, verdict);
    if (h->cut)         /* the pair being judged when the budget ran out, and those after */
        remember_unjudged(h, pairs, (size_t)h->sh->pos, n);
}

/*
 * Touches the entities on one side of the pairs remember_unjudged listed (the side with
 * fewer distinct ids), unless the set is faulted now: the engine then asks the rule about
 * every pair of each at the next tick. That covers the unjudged pairs, and also the other
 * pairs of those entities: the engine has no call to re-judge one pair.
 */
static void retouch(sl_lua *h)
{
    size_t n = h->retouch.n;
    uint64_t *ids = h->retouch.p;
    uint64_t *a = n ? malloc(n * sizeof *a) : NULL;
    if (!h->st.faulted && a) {
        size_t nw = distinct(ids, n, 0, a);
        size_t nt = distinct(ids, n, 1, a + n / 2);
        const uint64_t *pick = nw <= nt ? a : a + n / 2;
        for (size_t i = 0, m = nw <= nt ? nw : nt; i < m; i++)
            if (sl_space_touch(h->space, pick[i]) == 0)
                h->st.rejudged++;
    }
    free(a);
    h->retouch.n = 0;
}

/* Runs the enter / stay / leave handlers over events, if the running set has any. */
static void run_handlers(sl_lua *h, const sl_event *events, size_t n)
{
    if (!h->sh->faulted && h->set_ref != LUA_NOREF && h->has_handlers) {
        h->st.handler_calls += n;
        sl__lua_batch(h, RT_DISPATCH, events, n, NULL);
    }
}

typedef struct tick_ctx {
    sl_lua *h;
    sl_event_sink sink;
    void *ud;
} tick_ctx;

static void event_sink(void *ud, const sl_event *ev, size_t n)
{
    tick_ctx *t = ud;
    run_handlers(t->h, ev, n);
    if (t->sink)
        t->sink(t->ud, ev, n);
}

void sl_lua_dispatch(sl_lua *h, const sl_event *events, size_t n)
{
    sl__lua_budget_start(h);
    run_handlers(h, events, n);
    sl__lua_budget_end(h);
}

/* The lifecycle hooks over the changes since the last tick; after one that raised, the
 * rest (a cut at the budget, or a faulted set, drops them: their log starts afresh). */
static void run_hooks(sl_lua *h)
{
    lua_Number start = 0;
    while (!h->sh->faulted && h->set_ref != LUA_NOREF && !h->cut) {
        lua_pushnumber(h->L, start);
        if (sl__lua_call(h, RT_HOOKS, 1, 0, NULL, 0) == 0)  // [start] -> []
            return;
        start = (lua_Number)h->sh->pos + 1;
    }
}

int sl_lua_tick(sl_lua *h, sl_event_sink sink, void *ud, sl_lua_emit_sink esink, void *eud)
{
    tick_ctx t = {h, sink, ud};
    int top = lua_gettop(h->L);
    h->ticks++;
    sl__lua_emits_clear(h);
    sl__lua_budget_start(h);
    lua_pushnumber(h->L, (lua_Number)h->ticks);
    sl__lua_call(h, RT_SET_TICK, 1, 0, NULL, 0);            // [tick] -> []
    run_hooks(h);
    /* What the hooks asked for applies before the tick judges pairs (an on_add that sets a
     * prop or touches entities is seen this tick). */
    sl__lua_call(h, RT_APPLY, 0, 0, NULL, 0);
    int rc = sl_space_tick(h->space, event_sink, &t);
    size_t nr;
    const sl_region_event *rv = sl_space_region_events(h->space, &nr);
    if (nr && !h->sh->faulted && h->set_ref != LUA_NOREF && !h->cut)
        sl__lua_batch(h, RT_REGIONS, rv, nr, NULL);
    if (!h->sh->faulted && h->set_ref != LUA_NOREF) {
        lua_pushnumber(h->L, (lua_Number)h->ticks);
        sl__lua_call(h, RT_ON_TICK, 1, 0, NULL, 0);         // [tick] -> []
    }
    sl__lua_budget_end(h);
    retouch(h);
    /* The changes scripts queued apply now, for the next tick (even from a faulted set:
     * they were asked for before it stopped). */
    sl__lua_call(h, RT_APPLY, 0, 0, NULL, 0);
    /* Custom events go out last: no Lua runs after this until the next call into the host,
     * so the caller may keep pointers to them until then (host.h). */
    sl__lua_emits_flush(h, esink, eud);
    assert(lua_gettop(h->L) == top);
    (void)top;
    return rc;
}

int sl_lua_ask(sl_lua *h, uint64_t watcher, uint64_t target, bool *verdict)
{
    if (h->st.faulted)
        return SL_ELIMIT;
    if (!h->has_visible || h->sh->faulted || h->set_ref == LUA_NOREF)
        return SL_ENOENT;
    sl_rule_pair p = {watcher, target};
    uint8_t v = 2;      /* neither answer: the rule raised */
    sl__lua_budget_start(h);
    sl__lua_batch(h, RT_JUDGE, &p, 1, &v);
    sl__lua_budget_end(h);
    if (v > 1)
        return SL_ENOEXEC;
    *verdict = v;
    return 0;
}
