/*
 * host_impl.h: what the files of the script host share, for lua/ only (callers use host.h).
 *
 * The host is split by concept: host.c (the VM's lifetime and the tick), reload.c (script
 * sets), call.c (every call into Lua, and its errors), budget.c (the time budget and the
 * memory limit), binding.c (what the runtime calls through the FFI, and custom events),
 * props.c (entity props) and state.c (the persistent state as msgpack bytes, out and in).
 * lib/runtime.lua is the Lua half of all of them.
 */
#pragma once

#include "lua/host.h"

#include "base/vec.h"

#include <lua.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The binding: the block of numbers the host and the runtime share, and the table of host
 * functions the runtime calls through the FFI. This one text is both sides of it: the C
 * compiler reads it just below, and binding.c hands it to the runtime as a string for
 * ffi.cdef, so the two cannot drift apart. (The engine types it names, sl_entity_info,
 * sl_rule_pair and sl_event, are mirrored in runtime.lua; test lua_sandbox checks them.)
 */
#define SL_LUA_BINDING                                                                      \
    typedef struct sl_lua_shared {                                                          \
        int32_t seq;        /* counts checks (see runtime.lua's chk) */                   \
        int32_t stop[2];    /* both nonzero: past the deadline (the watchdog raises them) */ \
        int32_t faulted;    /* nonzero: the running set overran its time or memory */      \
        int32_t pos;        /* the batch loops: index of the pair / event being handled */ \
        int32_t fn;         /* the designer function running (sl_lua_fn) */                \
    } sl_lua_shared;                                                                        \
    typedef struct sl_lua_api {                                                             \
        void *host, *space;                                                                 \
        int (*get)(void *space, uint64_t id, sl_entity_info *out);                          \
        int (*check)(void *host);                                                           \
        int (*emit)(void *host, uint64_t watcher, const char *name, size_t nlen,            \
                    const char *payload, size_t plen);                                      \
        int (*set_radius)(void *space, uint64_t id, float r);                               \
        int (*set_layer)(void *space, uint64_t id, uint32_t layer);                         \
        int (*set_hysteresis)(void *space, uint64_t id, float h);                           \
        int (*set_lod)(void *space, uint64_t id, const sl_lod_band *b, uint32_t n);         \
        int (*relate)(void *space, uint64_t w, uint64_t t, int kind);                       \
        int (*set_always)(void *space, uint64_t id, bool on);                               \
        int (*set_cap)(void *space, uint64_t id, uint32_t n, float margin);                 \
        int (*set_priority)(void *space, uint64_t id, int32_t p);                           \
        int (*set_group)(void *space, uint64_t id, uint32_t g);                             \
        int (*query)(void *space, const sl_query *q, const sl_query_hit **hits, size_t *n);  \
        int (*set_region)(void *space, uint64_t id, const sl_region *g);                    \
        int (*remove_region)(void *space, uint64_t id);                                     \
        bool (*in_region)(void *space, uint64_t region, uint64_t id);                       \
        int (*touch)(void *space, uint64_t id);                                             \
        const char *(*error)(void *space);                                                  \
        void (*log)(void *host, const char *msg);                                           \
        uint64_t (*owner)(void *host, uint64_t id);                                         \
    } sl_lua_api;
SL_LUA_BINDING

/* The runtime's functions the host calls (the fields of the table runtime.lua returns). */
enum {
    RT_BUILD, RT_SWAP, RT_DROP, RT_JUDGE, RT_DISPATCH, RT_ON_TICK, RT_SET_TICK, RT_SET_PROP,
    RT_REMOVING, RT_APPLY, RT_PROPS, RT_CANCEL, RT_STATE, RT_SET_STATE, RT_COLUMNS, RT_ADDED,
    RT_HOOKS, RT_REGIONS, RT_COUNT
};

struct sl_lua {
    lua_State *L;
    sl_space *space;
    sl_lua_config cfg;
    char prop_limit[8];         /* the limit the last refused sl_lua_set_prop met */
    char dir[512];
    sl_lua_shared *sh;
    sl_lua_api api;
    int rt[RT_COUNT];           /* registry refs to the runtime's functions; owner: host */
    int set_ref;                /* registry ref to the running set; owner: host */
    bool has_visible, has_handlers;
    bool has_hooks;             /* the set has a lifecycle hook (sl_lua_added calls Lua) */

    size_t mem_used, mem_limit;
    size_t mem_script;          /* of mem_used, the scripts' blocks (budget.c) */
    bool limit_on, mem_hit, big_hit;
    bool building;              /* a reload's build runs: overruns fail it, not the set */
    bool cut;                   /* this tick's scripts ran past the budget and were stopped */
    sl_vec retouch;             /* uint64 ids: watchers of the pairs a cut left unjudged */
    double deadline;            /* sl_now_ms() past which the running call stops */
    double budget;              /* ms of script time per tick (or per reload) */
    double used;                /* ms of script time spent this tick */

    /* The watchdog (budget.c): a thread that raises sh->stop when an armed deadline passes. */
    pthread_t wd_thread;
    pthread_mutex_t wd_mu;
    pthread_cond_t wd_cond;
    bool wd_started, wd_armed, wd_waiting, wd_quit;
    double wd_deadline;         /* sl_now_ms() at which it raises sh->stop */

    uint64_t ticks;
    sl_lua_stats st;
    uint64_t *seen;             /* hashes of logged error messages (open addressing) */
    uint32_t nseen;

    sl_vec emits;               /* sl_lua_emit: this tick's custom events */
    sl_vec arena;               /* bytes: their names and payloads, each NUL-terminated */
};

/* ---- host.c ---- */

/* Logs a line through cfg.log (stderr without one). */
void sl__lua_log(sl_lua *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The space's rule while the running set defines `visible` (ud: the host). */
void sl__lua_rule(void *ud, const sl_rule_pair *pairs, size_t n, uint8_t *verdict);

/* ---- reload.c ---- */

/* Builds a set from dir and swaps it in. Returns 0, SL_ENOEXEC (the reason in err: the
 * running set stays) or SL_ENOMEM. */
int sl__lua_load_set(sl_lua *h, const char *dir, char *err, size_t errlen);

/* ---- state.c ---- */

/* Makes the msgpack bytes buf[0..len) (one map, as sl_lua_state_save writes it) the state,
 * before the first build. Returns 0, SL_EINVAL (malformed: why in err) or SL_ENOMEM; on
 * failure the state is left as it was. */
int sl__lua_state_restore(sl_lua *h, const char *buf, size_t len, char *err, size_t errlen);

/* ---- call.c ---- */

/*
 * Calls runtime function `which` ([args...] -> [results...] on success, [] on failure).
 * Returns 0, or the Lua status once the error is counted and logged, or (errmsg) copied.
 */
int sl__lua_call(sl_lua *h, int which, int nargs, int nres, char *errmsg, size_t errlen);
/* Runs a batch loop (RT_JUDGE with verdicts to out, or RT_DISPATCH) over n items, going on
 * after each item that raised. */
void sl__lua_batch(sl_lua *h, int which, const void *items, size_t n, void *out);

/* ---- budget.c ---- */

/* A single block the VM may allocate while designer code runs (bigger: "not enough memory",
 * an ordinary error): it bounds what one library call can copy or fill. */
#define SL_LUA_BLOCK_MAX ((size_t)12 << 20)

/* Lowers the watchdog's flags (sh->stop). */
void sl__lua_stop_clear(sl_lua *h);
/* Starts the watchdog thread; returns 0 or SL_ENOMEM. */
int sl__lua_watchdog_start(sl_lua *h);
/* Stops and joins it (if it was started). */
void sl__lua_watchdog_stop(sl_lua *h);

/* The VM's allocator (ud: the host): counts, and refuses growth past the limit in scripts
 * (only scripts' blocks count). */
void *sl__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* The runtime's clock check (ud: the host): nonzero when the running script must stop. */
int sl__lua_check(void *host);
/* Marks the running set faulted (logged once); it is not called again until a reload. */
void sl__lua_fault(sl_lua *h, const char *why);
/* Starts a fresh budget: for a tick, a reload, a dispatch or an ask. */
void sl__lua_budget_start(sl_lua *h);
/* Ends it: applies the spike policy if the scripts were cut (the set goes on, or after
 * max_overruns cuts in a row is faulted). Returns whether they were cut. */
bool sl__lua_budget_end(sl_lua *h);
/* Sets the limits for one call (designer: the memory limit applies); returns its start. */
double sl__lua_limits_on(sl_lua *h, bool designer);
/* Lifts them again, charging the call's time to the budget if it ran designer code. */
void sl__lua_limits_off(sl_lua *h, double t0);

/* ---- strlib.c ---- */

/* [] -> [t]: the bounded pattern functions (find, match, gmatch, gsub) scripts get in place
 * of the string library's; they stop when sh->stop is raised and the deadline has passed. */
void sl__lua_push_strlib(sl_lua *h);

/* ---- binding.c ---- */

/* The binding's text for ffi.cdef (SL_LUA_BINDING as a string). */
extern const char sl__lua_binding_cdef[];
/* Fills h->api with the host's functions. */
void sl__lua_binding_init(sl_lua *h);
/* Forgets the custom events of the last tick. */
void sl__lua_emits_clear(sl_lua *h);
/* Hands this tick's custom events to esink (if any). */
void sl__lua_emits_flush(sl_lua *h, sl_lua_emit_sink esink, void *eud);
