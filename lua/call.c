/*
 * call.c: every call from C into Lua, and what happens when one raises.
 *
 * The host calls only the runtime's functions (the RT_* refs), always through sl__lua_call:
 * lua_pcall with a traceback handler, under the limits of budget.c. The runtime in turn
 * runs designer code in batches, so C calls into Lua once per batch of pairs or events,
 * never once per pair.
 *
 * An error inside a batch stops the batch at the pair or event that raised (the runtime
 * notes its index in the shared block's `pos`, and the designer function in `fn`); the host
 * logs it (once per distinct message), counts it against that function, and resumes the
 * batch after it. A failing `visible` keeps the pair's previous verdict.
 */
#include "lua/host_impl.h"

#include "base/hash.h"

#include <lauxlib.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEEN_MAX 4096u          /* distinct error messages remembered (then: not logged) */

/* The message handler: the error with a traceback (memory errors never get here). */
static int l_traceback(lua_State *L)   // [msg] -> [msg with traceback]
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
 * After a call failed with status rc ([err] on the stack, popped here): counts the error
 * against the designer function that raised, logs it or copies it to errmsg, and on a
 * memory overrun faults the set (errmsg: says so in errmsg instead).
 */
static void on_error(sl_lua *h, int rc, char *errmsg, size_t errlen)
{
    lua_State *L = h->L;
    const char *msg = lua_tostring(L, -1);
    if (!msg)
        msg = "(error object is not a string)";
    sl_lua_fn fn = (sl_lua_fn)h->sh->fn;
    if (fn >= SL_FN_COUNT)
        fn = SL_FN_NONE;
    h->st.errors[fn]++;
    char big[160];
    if (h->big_hit && !h->mem_hit) {
        /* A block over SL_LUA_BLOCK_MAX was refused: an ordinary error, not a fault. */
        snprintf(big, sizeof big, "%s (a single string or table part over %zu MiB)", msg,
                 SL_LUA_BLOCK_MAX >> 20);
        msg = big;
    }
    if (errmsg && errlen)
        snprintf(errmsg, errlen, "%s", msg);
    else if (first_time(h, msg))
        sl__lua_log(h, "error in %s: %s", sl_lua_fn_name(fn), msg);
    if (h->mem_hit || (rc == LUA_ERRMEM && !h->big_hit)) {
        char why[128];
        snprintf(why, sizeof why, "went over its memory limit of %zu bytes", h->mem_limit);
        if (!errmsg)
            sl__lua_fault(h, why);
        else if (errlen)
            snprintf(errmsg, errlen, "%s (in %s)", why, sl_lua_fn_name(fn));
    }
    lua_pop(L, 1);
    if (h->mem_hit && !errmsg) {
        /* Let the set's memory go: it is not called again until a reload. */
        sl__lua_call(h, RT_DROP, 0, 0, NULL, 0);
        luaL_unref(L, LUA_REGISTRYINDEX, h->set_ref);
        h->set_ref = LUA_NOREF;
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
}

int sl__lua_call(sl_lua *h, int which, int nargs, int nres, char *errmsg, size_t errlen)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs;
    assert(which >= 0 && which < RT_COUNT && base >= 0);
    lua_pushcfunction(L, l_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->rt[which]);
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);        /* [msgh, fn, args...] */
    h->sh->fn = SL_FN_NONE;
    /* Only designer code is limited: host work must always be able to finish. */
    double t0 = sl__lua_limits_on(h, which == RT_BUILD || which == RT_JUDGE ||
                                     which == RT_DISPATCH || which == RT_ON_TICK ||
                                     which == RT_HOOKS || which == RT_REGIONS);
    int rc = lua_pcall(L, nargs, nres, base + 1);
    sl__lua_limits_off(h, t0);
    lua_remove(L, base + 1);
    if (rc)
        on_error(h, rc, errmsg, errlen);
    assert(lua_gettop(L) == base + (rc ? 0 : nres));    /* the stack effect promised */
    return rc;
}

void sl__lua_batch(sl_lua *h, int which, const void *items, size_t n, void *out)
{
    assert(which == RT_JUDGE || which == RT_DISPATCH || which == RT_REGIONS);
    size_t start = 0;
    while (start < n && !h->sh->faulted) {
        lua_pushlightuserdata(h->L, (void *)items);
        lua_pushnumber(h->L, (lua_Number)n);
        if (which == RT_JUDGE)
            lua_pushlightuserdata(h->L, out);
        lua_pushnumber(h->L, (lua_Number)start);
        if (sl__lua_call(h, which, which == RT_JUDGE ? 4 : 3, 0, NULL, 0) == 0)
            return;
        start = (size_t)h->sh->pos + 1;
    }
}
