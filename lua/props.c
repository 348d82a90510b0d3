/*
 * props.c: entity props, as the game sets and reads them. The props themselves live in the
 * runtime (runtime.lua's COL columns, which rules read without a C call); these functions
 * are host work, so the scripts' limits do not apply to them.
 *
 * Ids cross into Lua as scripts see them: a number below 2^53 (exact in a double), else
 * the id's decimal string. The props' memory is the host's, not the scripts' (these calls
 * run with the limits off, and budget.c tags the blocks they allocate): a game filling
 * props does not count against the scripts' memory limit.
 */
#include "lua/host_impl.h"

#include <stdio.h>
#include <stdlib.h>

/* [] -> [id] */
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

/* [] -> [v] (nil for SL_VALUE_NIL or no value) */
static void push_value(lua_State *L, const sl_value *v)
{
    switch (v ? v->type : SL_VALUE_NIL) {
    case SL_VALUE_BOOL: lua_pushboolean(L, v->b); break;
    case SL_VALUE_NUMBER: lua_pushnumber(L, v->n); break;
    case SL_VALUE_STRING: lua_pushlstring(L, v->s, v->len); break;
    default: lua_pushnil(L); break;
    }
}

/* The Lua value at idx as an sl_value (a string points into the Lua state; other types:
 * SL_VALUE_NIL). */
static sl_value to_value(lua_State *L, int idx)
{
    sl_value v = {0};
    size_t len = 0;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: v.type = SL_VALUE_BOOL; v.b = lua_toboolean(L, idx); break;
    case LUA_TNUMBER: v.type = SL_VALUE_NUMBER; v.n = lua_tonumber(L, idx); break;
    case LUA_TSTRING:
        v.type = SL_VALUE_STRING;
        v.s = lua_tolstring(L, idx, &len);
        v.len = len;
        break;
    default: break;
    }
    return v;
}

/* sl_lua_set_prop, and with touch false sl_lua_restore_prop: a space rebuilt from a
 * snapshot comes with its pairs' verdicts, judged with these props already, so touching
 * would only ask the rule again about every pair of every restored entity. */
static int set_prop(sl_lua *h, uint64_t id, const char *key, const sl_value *v, bool touch)
{
    sl_entity_info info;
    if (sl_space_get(h->space, id, &info))
        return SL_ENOENT;
    if (!key || !*key)
        return SL_EINVAL;
    lua_State *L = h->L;
    push_id(L, id);
    lua_pushstring(L, key);
    push_value(L, v);
    lua_pushnumber(L, h->cfg.max_entity_props);
    lua_pushnumber(L, h->cfg.max_entity_prop_bytes);
    lua_pushnumber(L, h->cfg.max_prop_keys);
    // [id, key, v, max props, max bytes, max keys] -> [limit or nil]
    if (sl__lua_call(h, RT_SET_PROP, 6, 1, NULL, 0))
        return SL_EINVAL;
    const char *limit = lua_tostring(L, -1);
    if (limit)
        snprintf(h->prop_limit, sizeof h->prop_limit, "%s", limit);
    lua_pop(L, 1);
    if (limit)
        return SL_ELIMIT;
    return touch ? sl_space_touch(h->space, id) : 0;
}

int sl_lua_set_prop(sl_lua *h, uint64_t id, const char *key, const sl_value *v)
{
    return set_prop(h, id, key, v, true);
}

int sl_lua_restore_prop(sl_lua *h, uint64_t id, const char *key, const sl_value *v)
{
    return set_prop(h, id, key, v, false);
}

const char *sl_lua_prop_limit(const sl_lua *h)
{
    return h->prop_limit;
}

void sl_lua_removing(sl_lua *h, uint64_t id)
{
    push_id(h->L, id);
    sl__lua_call(h, RT_REMOVING, 1, 0, NULL, 0);       // [id] -> []
}

void sl_lua_added(sl_lua *h, uint64_t id)
{
    if (!h->has_hooks)
        return;
    push_id(h->L, id);
    sl__lua_call(h, RT_ADDED, 1, 0, NULL, 0);          // [id] -> []
}

/* An id as the columns key it (a number below 2^53, else its decimal string); false for
 * anything else. */
static bool to_id(lua_State *L, int at, uint64_t *id)
{
    if (lua_type(L, at) == LUA_TNUMBER) {
        lua_Number d = lua_tonumber(L, at);
        if (!(d >= 0 && d < 9007199254740992.0) || d != (lua_Number)(uint64_t)d)
            return false;
        *id = (uint64_t)d;
        return true;
    }
    if (lua_type(L, at) != LUA_TSTRING)
        return false;
    char *end;
    const char *s = lua_tostring(L, at);
    *id = strtoull(s, &end, 10);
    return *s && !*end;
}

void sl_lua_props_all(sl_lua *h,
                      void (*fn)(void *ud, uint64_t id, const char *key, const sl_value *v),
                      void *ud)
{
    lua_State *L = h->L;
    if (sl__lua_call(h, RT_COLUMNS, 0, 1, NULL, 0))    // [] -> [columns]
        return;
    lua_pushnil(L);                 /* [cols, nil] */
    while (lua_next(L, -2)) {       /* [cols, key, column] */
        if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
            const char *key = lua_tostring(L, -2);
            lua_pushnil(L);         /* [cols, key, column, nil] */
            while (lua_next(L, -2)) {   /* [cols, key, column, id, value] */
                uint64_t id;
                if (to_id(L, -2, &id)) {
                    sl_value v = to_value(L, -1);
                    fn(ud, id, key, &v);
                }
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);              /* [cols, key] */
    }
    lua_pop(L, 1);
}

void sl_lua_props_each(sl_lua *h, uint64_t id,
                       void (*fn)(void *ud, const char *key, const sl_value *v), void *ud)
{
    lua_State *L = h->L;
    push_id(L, id);
    if (sl__lua_call(h, RT_PROPS, 1, 1, NULL, 0))      // [id] -> [props]
        return;
    lua_pushnil(L);             /* [props, nil] */
    while (lua_next(L, -2)) {   /* [props, key, value] */
        if (lua_type(L, -2) == LUA_TSTRING) {
            sl_value v = to_value(L, -1);
            fn(ud, lua_tostring(L, -2), &v);
        }
        lua_pop(L, 1);          /* [props, key] */
    }
    lua_pop(L, 1);
}
