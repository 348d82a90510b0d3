/*
 * binding.c: what the runtime calls through the FFI (the sl_lua_api table of host_impl.h),
 * and the custom events scripts emit.
 *
 * The runtime gets the table's address once, as light userdata, and calls its functions as
 * FFI calls, which the JIT compiles in line: no Lua C API, no boxing. They must therefore
 * never raise a Lua error (an FFI callee cannot unwind Lua): they return a status and the
 * runtime raises. Custom events are kept as offsets into one string arena until the tick
 * hands them out, because the arena may move while it grows.
 */
#include "lua/host_impl.h"

#include <string.h>

#define EMIT_MAX (1u << 20)     /* custom events per tick */
#define EMIT_BYTES (64u << 20)  /* their names and payloads per tick */

#define SL_LUA_STR_(...) #__VA_ARGS__
#define SL_LUA_STR(...) SL_LUA_STR_(__VA_ARGS__)
const char sl__lua_binding_cdef[] = SL_LUA_STR(SL_LUA_BINDING);

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
    *e = (sl_lua_emit){
        .watcher = watcher, .name = (const char *)(uintptr_t)off, .name_len = nlen,
        .payload = (const char *)(uintptr_t)(off + nlen + 1), .payload_len = plen,
    };
    h->st.emits++;
    return 0;
}

void sl__lua_emits_clear(sl_lua *h)
{
    h->emits.n = 0;
    h->arena.n = 0;
}

void sl__lua_emits_flush(sl_lua *h, sl_lua_emit_sink esink, void *eud)
{
    if (!esink || !h->emits.n)
        return;
    sl_lua_emit *ev = h->emits.p;
    const char *arena = h->arena.p;
    for (size_t i = 0; i < h->emits.n; i++) {
        ev[i].name = arena + (uintptr_t)ev[i].name;
        ev[i].payload = arena + (uintptr_t)ev[i].payload;
    }
    esink(eud, ev, h->emits.n);
}

static void api_log(void *host, const char *msg)
{
    sl__lua_log(host, "%s", msg);
}

static uint64_t api_owner(void *host, uint64_t id)
{
    const sl_lua *h = host;
    return h->cfg.owner ? h->cfg.owner(h->cfg.owner_ud, id) : 0;
}

/* The space's own calls, with the space as a void * (the runtime keeps it untyped). */
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
static int api_set_hysteresis(void *space, uint64_t id, float h)
{
    return sl_space_set_hysteresis(space, id, h);
}
static int api_set_lod(void *space, uint64_t id, const sl_lod_band *b, uint32_t n)
{
    return sl_space_set_lod(space, id, b, n);
}
static int api_relate(void *space, uint64_t w, uint64_t t, int kind)
{
    return sl_space_relate(space, w, t, (sl_relation)kind);
}
static int api_set_always(void *space, uint64_t id, bool on)
{
    return sl_space_set_always(space, id, on);
}
static int api_set_cap(void *space, uint64_t id, uint32_t n, float margin)
{
    return sl_space_set_cap(space, id, n, margin);
}
static int api_set_priority(void *space, uint64_t id, int32_t p)
{
    return sl_space_set_priority(space, id, p);
}
static int api_set_group(void *space, uint64_t id, uint32_t g)
{
    return sl_space_set_group(space, id, g);
}
static int api_query(void *space, const sl_query *q, const sl_query_hit **hits, size_t *n)
{
    return sl_space_query(space, q, hits, n);
}
static int api_set_region(void *space, uint64_t id, const sl_region *g)
{
    return sl_space_set_region(space, id, g);
}
static int api_remove_region(void *space, uint64_t id)
{
    return sl_space_remove_region(space, id);
}
static bool api_in_region(void *space, uint64_t region, uint64_t id)
{
    return sl_space_in_region(space, region, id);
}
static int api_touch(void *space, uint64_t id)
{
    return sl_space_touch(space, id);
}
static const char *api_error(void *space)
{
    return sl_space_error(space);
}

void sl__lua_binding_init(sl_lua *h)
{
    h->api = (sl_lua_api){
        .host = h, .space = h->space, .get = api_get, .check = sl__lua_check,
        .emit = api_emit, .set_radius = api_set_radius, .set_layer = api_set_layer,
        .set_hysteresis = api_set_hysteresis, .set_lod = api_set_lod,
        .relate = api_relate, .set_always = api_set_always, .set_cap = api_set_cap,
        .set_priority = api_set_priority, .set_group = api_set_group, .query = api_query,
        .set_region = api_set_region, .remove_region = api_remove_region,
        .in_region = api_in_region, .touch = api_touch, .error = api_error, .log = api_log,
        .owner = api_owner,
    };
}
