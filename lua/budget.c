/*
 * budget.c: what stops a script that runs too long or grows too big: the time budget and
 * the memory limit. Both apply to designer code only (sl__lua_limits_on says when), so
 * that host work can always finish, report and recover.
 *
 * Time. The guarantee: whatever a script calls, it holds the loop at most the budget plus
 * the time of one bounded library call (50 ms; tests/lua lua_budget_library measures each
 * way of trying). Three parts:
 *  - A count hook cannot stop a loop that LuaJIT compiled (hooks do not fire inside traces,
 *    and Debian's LuaJIT is built without LUAJIT_ENABLE_CHECKHOOK). Instead the runtime's
 *    loader instruments designer code: a check at every loop body, function entry and goto,
 *    which the JIT compiles into the trace as a counter increment, one load of the shared
 *    block's `stop` and a branch (runtime.lua's chk says why `stop` has two slots). This
 *    covers interpreted code as well, so no count hook is set.
 *  - The watchdog: a thread per host that sleeps until the running call's deadline and then
 *    raises `stop`. It never touches the Lua state. So the first check after the deadline
 *    fails, however long the calls between two checks take (a loop around table.concat,
 *    table.remove...). The check then confirms with the clock (sl__lua_check), faults the
 *    set (or, during a reload, fails the build), and every later check raises, so even a
 *    script that catches errors in a loop unwinds (its pcall re-raises too).
 *  - Library calls that could run long by themselves are bounded: pattern matching and
 *    plain find (strlib.c) poll `stop` as they go; table.sort is the runtime's own,
 *    instrumented; and while designer code runs no single block may exceed
 *    SL_LUA_BLOCK_MAX, which bounds what one call (concat, rep, upper, `..`, a table's
 *    array) can copy or fill; lua-cjson's calls are bounded by size (runtime.lua). The
 *    longest such call measured 45 ms (an 8 MB `..` into fresh pages on a slow 2-core VM).
 *
 * Memory: the VM runs on sl__lua_alloc (LuaJIT's GC64 mode allows that), which tags each
 * block with who allocated it and refuses to grow the scripts' blocks past the limit while
 * designer code runs; the script then gets "not enough memory", and call.c faults the set
 * and lets its memory go.
 */
#include "lua/host_impl.h"

#include "base/clock.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/*
 * Each block carries a header saying who allocated it: scripts (designer code running) or
 * the host (props the game set, the runtime's own work). The memory limit counts the
 * scripts' blocks only, so that a game filling props cannot fault the scripts or make a
 * reload fail. A block reallocated takes the tag of whoever grows it (a table the host
 * made and a script fills becomes the script's).
 */
typedef struct block {
    size_t script;      /* 1: counted against the limit */
    size_t pad;         /* keeps the payload 16-byte aligned */
} block;

void *sl__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sl_lua *h = ud;
    block *b = ptr ? (block *)ptr - 1 : NULL;
    if (!ptr)
        osize = 0;
    size_t was_script = b && b->script ? osize : 0;
    assert(h->mem_used >= osize && h->mem_script >= was_script);
    if (nsize == 0) {
        free(b);
        h->mem_used -= osize;
        h->mem_script -= was_script;
        return NULL;
    }
    bool script = h->limit_on;
    if (script && nsize > osize) {
        if (nsize > SL_LUA_BLOCK_MAX) {
            h->big_hit = true;
            return NULL;
        }
        if (h->mem_script - was_script + nsize > h->mem_limit) {
            h->mem_hit = true;
            return NULL;
        }
    }
    if (nsize > SIZE_MAX - sizeof *b)
        return NULL;
    block *nb = realloc(b, sizeof *b + nsize);
    if (!nb)
        return NULL;
    nb->script = script;
    h->mem_used = h->mem_used - osize + nsize;
    h->mem_script = h->mem_script - was_script + (script ? nsize : 0);
    return nb + 1;
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
    if (sl_now_ms() >= h->deadline) {
        if (h->building) {
            h->sh->faulted = 1;     /* unwinds the build; sl__lua_load_set reports it */
            return 1;
        }
        /* The tick is cut: every later check raises until it ends (sl__lua_budget_end). */
        if (!h->cut) {
            h->cut = true;
            h->st.last_overrun_fn = (sl_lua_fn)h->sh->fn;
        }
        h->sh->faulted = 1;
        return 1;
    }
    return 0;
}

void sl__lua_stop_clear(sl_lua *h)
{
    __atomic_store_n(&h->sh->stop[0], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sh->stop[1], 0, __ATOMIC_RELAXED);
}

void sl__lua_budget_start(sl_lua *h)
{
    h->used = 0;
    h->cut = false;
}

/*
 * The spike policy. A tick that runs past the budget is cut (its remaining rule pairs keep
 * their verdicts and their watchers are touched, so they are judged at the next tick; its
 * remaining handler calls and on_tick are skipped), and the set goes on: a legitimate bulk
 * add may take longer than one tick's budget. Only max_overruns cut ticks in a row fault it.
 */
bool sl__lua_budget_end(sl_lua *h)
{
    sl_lua_stats *st = &h->st;
    if (!h->cut) {
        if (!st->faulted)
            st->overrun_streak = 0;
        return false;
    }
    h->cut = false;
    st->overruns++;
    st->overrun_streak++;
    st->last_overrun_tick = h->ticks;
    st->last_overrun_ms = h->used;
    if (st->overrun_streak >= st->max_overruns) {
        char why[160];
        snprintf(why, sizeof why, "ran past its time budget of %.0f ms in %u ticks in a row "
                 "(the last in %s)", h->budget, st->overrun_streak,
                 sl_lua_fn_name(st->last_overrun_fn));
        sl__lua_fault(h, why);
        return true;
    }
    sl__lua_log(h, "tick %llu: scripts cut at their time budget of %.0f ms (in %s); %u of %u "
                "such ticks in a row fault the set", (unsigned long long)h->ticks, h->budget,
                sl_lua_fn_name(st->last_overrun_fn), st->overrun_streak, st->max_overruns);
    h->sh->faulted = 0;
    return true;
}

double sl__lua_limits_on(sl_lua *h, bool designer)
{
    h->mem_hit = h->big_hit = false;
    h->limit_on = designer;
    /* The budget counts script time only: the core's part of the tick is not charged. */
    double t0 = sl_now_ms();
    h->deadline = t0 + (h->budget - h->used);
    sl__lua_stop_clear(h);
    if (designer && h->wd_started) {
        pthread_mutex_lock(&h->wd_mu);
        h->wd_armed = true;
        h->wd_deadline = h->deadline;
        if (h->wd_waiting)      /* asleep without a deadline: it must learn this one */
            pthread_cond_signal(&h->wd_cond);
        pthread_mutex_unlock(&h->wd_mu);
    }
    return t0;
}

void sl__lua_limits_off(sl_lua *h, double t0)
{
    if (h->limit_on) {
        h->used += sl_now_ms() - t0;
        if (h->wd_started) {
            /* No signal: a watchdog asleep until the old deadline wakes, sees it disarmed
             * and sleeps again. */
            pthread_mutex_lock(&h->wd_mu);
            h->wd_armed = false;
            pthread_mutex_unlock(&h->wd_mu);
        }
    }
    h->limit_on = false;
    sl__lua_stop_clear(h);
}

/* ---- the watchdog ----------------------------------------------------------------------- */

/* sl_now_ms() as a CLOCK_MONOTONIC timespec (the condition variable uses that clock). */
static struct timespec ms_to_ts(double ms)
{
    double s = floor(ms / 1e3);
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((ms - s * 1e3) * 1e6)};
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void *watchdog(void *arg)
{
    sl_lua *h = arg;
    pthread_mutex_lock(&h->wd_mu);
    while (!h->wd_quit) {
        if (!h->wd_armed) {
            h->wd_waiting = true;
            pthread_cond_wait(&h->wd_cond, &h->wd_mu);
            h->wd_waiting = false;
            continue;
        }
        double dl = h->wd_deadline;
        if (sl_now_ms() >= dl) {
            /* Past the deadline of the call still running: its next check fails. */
            __atomic_store_n(&h->sh->stop[0], 1, __ATOMIC_RELAXED);
            __atomic_store_n(&h->sh->stop[1], 1, __ATOMIC_RELAXED);
            h->wd_armed = false;
            continue;
        }
        struct timespec ts = ms_to_ts(dl);
        pthread_cond_timedwait(&h->wd_cond, &h->wd_mu, &ts);
    }
    pthread_mutex_unlock(&h->wd_mu);
    return NULL;
}

int sl__lua_watchdog_start(sl_lua *h)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca))
        return SL_ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&h->wd_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc)
        return SL_ENOMEM;
    if (pthread_mutex_init(&h->wd_mu, NULL)) {
        pthread_cond_destroy(&h->wd_cond);
        return SL_ENOMEM;
    }
    if (pthread_create(&h->wd_thread, NULL, watchdog, h)) {
        pthread_mutex_destroy(&h->wd_mu);
        pthread_cond_destroy(&h->wd_cond);
        return SL_ENOMEM;
    }
    h->wd_started = true;
    return 0;
}

void sl__lua_watchdog_stop(sl_lua *h)
{
    if (!h->wd_started)
        return;
    pthread_mutex_lock(&h->wd_mu);
    h->wd_quit = true;
    pthread_cond_signal(&h->wd_cond);
    pthread_mutex_unlock(&h->wd_mu);
    pthread_join(h->wd_thread, NULL);
    pthread_mutex_destroy(&h->wd_mu);
    pthread_cond_destroy(&h->wd_cond);
    h->wd_started = false;
}
