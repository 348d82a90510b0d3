/*
 * budget.c: what stops a script that runs too long or grows too big: the time budget and
 * the memory limit. Both apply to designer code only (sl__lua_limits_on says when), so
 * that host work can always finish, report and recover. A set that overruns either is
 * faulted: it is not called again (the rule keeps every pair's verdict, new pairs stay
 * unseen) until a reload succeeds.
 *
 * Time: a count hook cannot stop a loop that LuaJIT compiled (hooks do not fire inside
 * traces, and Debian's LuaJIT is built without LUAJIT_ENABLE_CHECKHOOK). Instead the
 * runtime's loader instruments designer code: a check at every loop body, function entry and
 * goto, which the JIT compiles into the trace as a decrement of the shared block's `budget`;
 * every CHECK_EVERY checks (runtime.lua) it calls sl__lua_check, which compares the clock
 * with the call's deadline. Past it the set is faulted and every later check raises, so even
 * a script that catches errors in a loop unwinds (its pcall re-raises too). This covers
 * interpreted code as well, so no count hook is set: it would only slow the interpreter.
 *
 * Memory: the VM runs on sl__lua_alloc (LuaJIT's GC64 mode allows that), which refuses to
 * grow past the limit while designer code runs; the script then gets "not enough memory",
 * and call.c faults the set and lets its memory go.
 */
#include "lua/host_impl.h"

#include "base/clock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

void *sl__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sl_lua *h = ud;
    if (!ptr)
        osize = 0;
    assert(h->mem_used >= osize);
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

void sl__lua_fault(sl_lua *h, const char *why)
{
    if (!h->st.faulted) {
        h->st.faulted = true;
        snprintf(h->st.fault, sizeof h->st.fault, "%s", why);
        sl__lua_log(h, "script set %s faulted: %s; it stays stopped until a reload succeeds",
                    h->dir, why);
    }
    h->sh->faulted = 1;
}

int sl__lua_check(void *host)
{
    sl_lua *h = host;
    if (h->sh->faulted)
        return 1;
    if (sl_now_ms() > h->deadline) {
        if (h->building) {
            h->sh->faulted = 1;     /* unwinds the build; sl__lua_load_set reports it */
            return 1;
        }
        char why[128];
        snprintf(why, sizeof why, "ran past its time budget of %.0f ms", h->budget);
        sl__lua_fault(h, why);
        return 1;
    }
    return 0;
}

void sl__lua_budget_start(sl_lua *h)
{
    h->used = 0;
    h->sh->budget = 1;      /* the first check looks at the clock */
}

double sl__lua_limits_on(sl_lua *h, bool designer)
{
    h->mem_hit = false;
    h->limit_on = designer;
    /* The budget counts script time only: the core's part of the tick is not charged. */
    double t0 = sl_now_ms();
    h->deadline = t0 + (h->budget - h->used);
    return t0;
}

void sl__lua_limits_off(sl_lua *h, double t0)
{
    if (h->limit_on)
        h->used += sl_now_ms() - t0;
    h->limit_on = false;
}
