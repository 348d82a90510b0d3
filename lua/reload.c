/*
 * reload.c: script sets, loaded and swapped in (the first load is a reload too).
 *
 * A new set is built beside the running one by the runtime (RT.build: load, run, check the
 * handlers, selftest(), lock the globals, on_reload(state)), under a budget of its own.
 * Only a build that succeeded replaces the running set, and only between ticks; any failure
 * leaves the running set as it was, fault included. An overrun during the build fails the
 * build instead of faulting the running set (h->building tells budget.c which).
 */
#include "lua/host_impl.h"

#include <lauxlib.h>

#include <stdio.h>

/* After a failed build ([err] already popped): reports why, and keeps the running set. */
static int build_failed(sl_lua *h, const char *dir, const char *msg, char *err, size_t errlen)
{
    char pre[96] = "";
    if (h->sh->faulted)
        snprintf(pre, sizeof pre, "ran past its time budget of %.0f ms: ", h->budget);
    if (err && errlen)
        snprintf(err, errlen, "%s%s", pre, msg);
    sl__lua_log(h, "loading %s failed; %s: %s%s", dir,
                h->set_ref == LUA_NOREF ? "no scripts run" : "the running scripts stay", pre,
                msg);
    h->st.reload_failures++;
    /* Its copy of the state and its queued changes go: a refused set changes nothing. */
    sl__lua_call(h, RT_CANCEL, 0, 0, NULL, 0);
    /* A failed build must not clear the running set's fault. */
    h->sh->faulted = h->st.faulted;
    lua_gc(h->L, LUA_GCCOLLECT, 0);
    return SL_ENOEXEC;
}

int sl__lua_load_set(sl_lua *h, const char *dir, char *err, size_t errlen)
{
    char msg[4096];
    sl__lua_budget_start(h);
    h->sh->faulted = 0;
    h->building = true;
    lua_pushstring(h->L, dir);
    int rc = sl__lua_call(h, RT_BUILD, 1, 1, msg, sizeof msg);     // [dir] -> [set]
    h->building = false;
    if (rc)
        return build_failed(h, dir, msg, err, errlen);
    /* Swap: the new set runs from the next tick. */
    lua_pushvalue(h->L, -1);
    int ref = luaL_ref(h->L, LUA_REGISTRYINDEX);                    // [set, set] -> [set]
    if (sl__lua_call(h, RT_SWAP, 1, 3, msg, sizeof msg)) {  // -> [vis, handlers, hooks]
        luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
        sl__lua_call(h, RT_CANCEL, 0, 0, NULL, 0);
        if (err && errlen)
            snprintf(err, errlen, "%s", msg);
        return SL_ENOMEM;
    }
    bool vis = lua_toboolean(h->L, -3);
    h->has_handlers = lua_toboolean(h->L, -2);
    h->has_hooks = lua_toboolean(h->L, -1);
    lua_pop(h->L, 3);                                       // [vis, handlers, hooks] -> []
    if (h->set_ref != LUA_NOREF)
        luaL_unref(h->L, LUA_REGISTRYINDEX, h->set_ref);
    h->set_ref = ref;
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    h->st.version++;
    h->st.faulted = false;
    h->st.fault[0] = '\0';
    h->st.overrun_streak = 0;
    h->sh->faulted = 0;
    if (vis || h->has_visible)          /* re-judges every pair */
        sl_space_set_rule(h->space, vis ? sl__lua_rule : NULL, h);
    h->has_visible = vis;
    lua_gc(h->L, LUA_GCCOLLECT, 0);
    return 0;
}

int sl_lua_reload(sl_lua *h, const char *dir, char *err, size_t errlen)
{
    /* A copy: dir may be h->dir itself, which a successful load overwrites. */
    char d[512];
    snprintf(d, sizeof d, "%s", dir ? dir : h->dir);
    return sl__lua_load_set(h, d, err, errlen);
}
