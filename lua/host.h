/*
 * host.h: the script host. It runs a directory of designer scripts (LuaJIT) against one
 * space: the `visible` rule on top of distance and layers, the enter / stay / leave and
 * tick handlers, custom events, and props. See scripts/README.md for what scripts see.
 *
 * Everything here runs on the caller's thread. Designer code runs only inside sl_lua_new and
 * sl_lua_reload (loading a set), sl_lua_tick and sl_lua_dispatch (the rule and handlers), and
 * sl_lua_ask (the rule on one pair, for the admin `why` command). A script can never take
 * the caller down: errors are logged once per distinct message and counted. A tick whose
 * scripts run past the time budget is cut there (the set keeps running; the pairs the rule
 * did not judge are judged at the next tick); max_overruns such ticks in a row, or one run
 * past the memory limit, fault the set: it is stopped until a reload succeeds.
 */
#pragma once

#include "base/value.h"
#include "engine/space.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_lua sl_lua;

/* The designer functions, for error counts (sl_lua_stats.errors). */
typedef enum sl_lua_fn {
    SL_FN_NONE = 0,
    SL_FN_VISIBLE, SL_FN_ON_ENTER, SL_FN_ON_LEAVE, SL_FN_ON_STAY, SL_FN_ON_TICK,
    SL_FN_SELFTEST, SL_FN_ON_RELOAD, SL_FN_LOAD, SL_FN_ON_ADD, SL_FN_ON_REMOVE, SL_FN_ON_PROP,
    SL_FN_ON_REGION_ENTER, SL_FN_ON_REGION_LEAVE,
    SL_FN_COUNT
} sl_lua_fn;

typedef void (*sl_lua_log_fn)(void *ud, const char *msg);

typedef struct sl_lua_config {
    const char *dir;        /* the script directory (its entry point is init.lua) */
    double budget_ms;       /* script time per tick (and per reload); 0: 200 ms */
    uint32_t max_overruns;  /* ticks in a row cut at the budget that fault the set; 0: 3 */
    /* What the game may set through sl_lua_set_prop (scripts' own props are bounded by
     * their memory limit): props an entity (0: 64), their bytes (keys and string values;
     * 0: 64 KiB), distinct keys in the space (0: 4096). */
    uint32_t max_entity_props, max_entity_prop_bytes, max_prop_keys;
    size_t mem_limit;       /* bytes the scripts' own allocations may hold (not props the
                               game set, nor the host's); 0: 256 MiB */
    bool unsafe;            /* operator opt-in: scripts get io, os, ffi, jit, debug... */
    sl_lua_log_fn log;      /* NULL: stderr */
    void *log_ud;
    /* A saved state to start from (sl_lua_state_save's bytes: one msgpack map), which the
     * first set's on_reload(state) gets as sightline.state; NULL: an empty state. Read by
     * sl_lua_new only (not kept). Maps and arrays become tables (an array's keys are 1..n),
     * str and bin strings, nil values are skipped; every number becomes a Lua number, so an
     * integer beyond 2^53 comes back rounded to the nearest double. */
    const char *state;
    size_t state_len;
    /* Who owns an entity, for scripts (sightline.owner, a view's `owner`): an opaque
     * number, equal for the entities of one owner (the server: one client session), 0 for
     * none. NULL: no entity has an owner. Called while scripts run, on whichever thread
     * runs the tick; it must only read. When an entity's owner changes, touch it
     * (sl_space_touch) so that the rule judges its pairs again. */
    uint64_t (*owner)(void *ud, uint64_t id);
    void *owner_ud;
} sl_lua_config;

/* A custom event a script emitted: payload is JSON text ("null" without a payload). */
typedef struct sl_lua_emit {
    uint64_t watcher;
    const char *name;
    const char *payload;
    size_t name_len, payload_len;
} sl_lua_emit;

/* Receives a tick's custom events in emission order, as the last thing sl_lua_tick does.
 * The events and their strings stay valid until the next call into the host (tick,
 * dispatch, ask, reload, set_prop, free), so a caller may keep pointers until then. */
typedef void (*sl_lua_emit_sink)(void *ud, const sl_lua_emit *events, size_t n);

typedef struct sl_lua_stats {
    uint64_t version;       /* script sets loaded so far (the first load is 1) */
    uint64_t reload_failures;
    bool faulted;           /* the running set was stopped (time or memory) */
    char fault[256];        /* why, when faulted */
    /* The spike policy: ticks cut at the budget (sl_lua_dispatch and sl_lua_ask count too). */
    uint64_t overruns;      /* cut, all time */
    uint32_t overrun_streak;    /* cut in a row up to now (max_overruns of them fault) */
    uint32_t max_overruns;  /* the configured limit */
    uint64_t last_overrun_tick; /* the tick of the last cut (0: none yet) */
    double last_overrun_ms; /* script time that tick ran before it was cut */
    sl_lua_fn last_overrun_fn;  /* the designer function running when it was cut */
    uint64_t rejudged;      /* entities touched after cuts so their pairs are judged again */
    uint64_t errors[SL_FN_COUNT];   /* errors raised, per designer function */
    uint64_t rule_pairs;    /* pairs judged by `visible` */
    uint64_t handler_calls; /* enter / stay / leave handler calls */
    uint64_t emits;         /* custom events emitted */
    size_t mem_bytes;       /* held by the Lua VM */
    size_t mem_script_bytes;    /* of which scripts' own (the memory limit's count): not the
                                   props the game set, nor the host's */
    char dir[512];
} sl_lua_stats;

/*
 * Creates a host for `space`, with the state cfg->state if given, and loads cfg->dir. Returns
 * 0, SL_ENOEXEC when the scripts do not load (the reason, with file:line, in err), SL_EINVAL
 * when cfg->state is malformed (not one msgpack map, nested more than 32 deep, keys other
 * than str / int / float / bool: why in err), or SL_ENOMEM. The host installs its rule on
 * the space (only while the scripts define `visible`); free the host before the space.
 */
int sl_lua_new(sl_lua **out, sl_space *space, const sl_lua_config *cfg, char *err,
               size_t errlen);
/* Frees the host and its VM, and takes its rule off the space. */
void sl_lua_free(sl_lua *h);

/*
 * Reloads the scripts, from dir (NULL: the directory they run from). The new set is built beside
 * the running one: loaded, run, checked, its selftest() passed and on_reload(state) called;
 * only then does it replace the running set (pairs are re-judged at the next tick when
 * either set has a rule). On failure returns SL_ENOEXEC with the error and traceback in err
 * (SL_ENOMEM if memory ran out), and the running set goes on unchanged. Call between ticks.
 */
int sl_lua_reload(sl_lua *h, const char *dir, char *err, size_t errlen);

/*
 * Runs one tick of the space with the scripts: the lifecycle hooks (on_add, on_remove,
 * on_prop) over the changes since the last tick, the space's tick (asking `visible` about
 * the pairs that need it), then the handlers for its events and its region events, then on_tick, then the changes
 * scripts asked for. Events go to sink, custom events to esink (either may be NULL).
 * Returns what sl_space_tick returned.
 */
int sl_lua_tick(sl_lua *h, sl_event_sink sink, void *ud, sl_lua_emit_sink esink, void *eud);

/*
 * Runs the enter / stay / leave handlers over events, as sl_lua_tick does with the tick's
 * (for callers that produce events themselves, and the handler benchmark). The script time
 * budget starts afresh.
 */
void sl_lua_dispatch(sl_lua *h, const sl_event *events, size_t n);

/*
 * Sets (or with SL_VALUE_NIL clears) prop `key` of entity id, and has its pairs re-judged at
 * the next tick. Returns 0, SL_ENOENT (no such entity in the space), SL_EINVAL (bad key) or
 * SL_ELIMIT (a limit of sl_lua_config would be passed: sl_lua_prop_limit says which; then
 * nothing changed).
 */
int sl_lua_set_prop(sl_lua *h, uint64_t id, const char *key, const sl_value *v);
/* As sl_lua_set_prop (same limits, same returns), but the entity is not touched: for a space
 * rebuilt from a snapshot (sl_space_import), whose pairs were judged already. */
int sl_lua_restore_prop(sl_lua *h, uint64_t id, const char *key, const sl_value *v);
/* Which limit the last SL_ELIMIT of sl_lua_set_prop (or sl_lua_restore_prop) met: "props"
 * (props an entity), "bytes" (their bytes) or "keys" (distinct keys in the space); "" before
 * any. */
const char *sl_lua_prop_limit(const sl_lua *h);
/* Calls fn for each prop of id (in no particular order); the strings live for the call. */
void sl_lua_props_each(sl_lua *h, uint64_t id,
                       void (*fn)(void *ud, const char *key, const sl_value *v), void *ud);
/* Calls fn for every prop of every entity (in no particular order), in one walk: what a
 * snapshot of the whole space reads (sl_lua_props_each costs a script call an entity). fn
 * must not call into the host; the strings live for the call. */
void sl_lua_props_all(sl_lua *h,
                      void (*fn)(void *ud, uint64_t id, const char *key, const sl_value *v),
                      void *ud);
/*
 * The entity lifecycle, which the space does not tell the host. Call sl_lua_added after each
 * entity the game adds to the space (for on_add), and sl_lua_removing just BEFORE each one
 * it removes (sl_space_remove): the host keeps its last view for on_remove (and for an
 * on_add still to run), and forgets its props, which an id added again must not inherit.
 * Entities a snapshot import brings are not added in this sense (no call). The hooks run at
 * the start of the next sl_lua_tick, in the order of the changes.
 */
void sl_lua_added(sl_lua *h, uint64_t id);
void sl_lua_removing(sl_lua *h, uint64_t id);

/*
 * Runs the `visible` rule on one pair now (for `sightctl why`), under a fresh time budget.
 * Returns 0 with *verdict set, SL_ENOENT when the running set has no rule, SL_ELIMIT when
 * the set is faulted (sl_lua_stats.fault says why) or SL_ENOEXEC when the rule raised or
 * was cut at the budget (logged and counted as tick errors are).
 */
int sl_lua_ask(sl_lua *h, uint64_t watcher, uint64_t target, bool *verdict);

/*
 * Saves the running set's sightline.state as one msgpack value, for sl_lua_config.state on
 * another node: *out (*len bytes) is malloc'd, the caller frees it. Every table is a map;
 * strings (any bytes) are str, booleans bool, integers in int64 / uint64 range int, other
 * numbers float64. Returns 0, SL_ENOMEM, or SL_EINVAL when the state holds what cannot
 * move (a function, cdata, coroutine or userdata, a table with a metatable, a table reached
 * twice, tables nested more than 32 deep, a key that is not a string, number or boolean):
 * err names its path (`state.players[3].cb: a function cannot be saved`). Runs no script.
 */
int sl_lua_state_save(sl_lua *h, char **out, size_t *len, char *err, size_t errlen);

void sl_lua_get_stats(const sl_lua *h, sl_lua_stats *st);
/* "visible", "on_enter", ... */
const char *sl_lua_fn_name(sl_lua_fn fn);
