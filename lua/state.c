/*
 * state.c: the scripts' persistent state (sightline.state) as msgpack bytes, out and in, so
 * that it can move with its space to another node.
 *
 * Only data moves: strings, numbers, booleans and tables of them. A state holding anything
 * else (a function, an FFI cdata, a coroutine, a table with a metatable, a table reached by
 * two paths) cannot be rebuilt the same elsewhere, so saving refuses it and names the path,
 * rather than move a state that quietly differs. Every table becomes a msgpack map (guessing
 * which tables are arrays would lose holes and keys beside 1..n); a number that is an integer
 * in int64 / uint64 range becomes a msgpack int, any other a float64.
 *
 * Both walks are C over the Lua API, run under lua_pcall: they never raise into the caller
 * (an out-of-memory error comes back as SL_ENOMEM), and each builds or reads one level per
 * C frame, so MAX_DEPTH bounds the recursion. They are host work: no script runs, so neither
 * the time budget nor the memory limit applies. Saving is O(size of the state): each table
 * is visited once (its entries counted, then packed), and a pointer set remembers the tables
 * seen. Restoring first checks the bytes (sl_msgpack_check), because msgpack-c allocates each
 * container from the count it claims before reading a single element.
 */
#include "lua/host_impl.h"

#include "base/mpcheck.h"

#include "base/common.h"

#include <lauxlib.h>
#include <msgpack.h>

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tables nested in a state, the state itself included (msgpack-c's unpacker holds 32). */
#define MAX_DEPTH 32
/* LuaJIT's lua_type for FFI values (lj_obj.h); lua.h has no name for it. */
#define TCDATA 10

/* ---- paths ------------------------------------------------------------------------------ */

/* One key of a path, from either side: a Lua key (saving) or a msgpack key (restoring). */
typedef struct pkey {
    int type;           /* LUA_TSTRING, LUA_TNUMBER or LUA_TBOOLEAN */
    const char *s;
    size_t len;
    double n;
    bool b;
} pkey;

static void put(char *buf, size_t size, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t size, size_t *at, const char *fmt, ...)
{
    if (*at >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *at, size - *at, fmt, ap);
    va_end(ap);
    if (n > 0)
        *at += (size_t)n < size - *at ? (size_t)n : size - *at;
}

static bool is_name(const char *s, size_t len)
{
    if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* Writes "state" and keys[0..n) as Lua would index them: state.players[3]["a b"][true]. */
static void put_path(char *buf, size_t size, const pkey *keys, int n)
{
    size_t at = 0;
    put(buf, size, &at, "state");
    for (int i = 0; i < n; i++) {
        const pkey *k = &keys[i];
        if (k->type == LUA_TBOOLEAN) {
            put(buf, size, &at, "[%s]", k->b ? "true" : "false");
        } else if (k->type == LUA_TNUMBER) {
            char num[32];
            snprintf(num, sizeof num, "%.15g", k->n);
            if (strtod(num, NULL) != k->n)      /* the shortest form that reads back */
                snprintf(num, sizeof num, "%.17g", k->n);
            if (isinf(k->n))
                snprintf(num, sizeof num, "%s1/0", k->n < 0 ? "-" : "");
            put(buf, size, &at, "[%s]", num);
        } else if (is_name(k->s, k->len)) {
            put(buf, size, &at, ".%.*s", (int)k->len, k->s);
        } else {
            /* Any bytes: printable ones as they are, the rest escaped; long keys cut. */
            put(buf, size, &at, "[\"");
            for (size_t j = 0; j < k->len && j < 40; j++) {
                unsigned char c = (unsigned char)k->s[j];
                if (c == '"' || c == '\\')
                    put(buf, size, &at, "\\%c", c);
                else if (c >= 0x20 && c < 0x7f)
                    put(buf, size, &at, "%c", c);
                else
                    put(buf, size, &at, "\\%u", c);
            }
            put(buf, size, &at, "%s\"]", k->len > 40 ? "..." : "");
        }
    }
}

/* ---- saving ----------------------------------------------------------------------------- */

typedef struct save_ctx {
    msgpack_sbuffer buf;
    msgpack_packer pk;
    const void **seen;          /* the tables packed so far (open addressing, NULL: free) */
    size_t nseen, cap;
    pkey keys[MAX_DEPTH];       /* the path to the value being packed */
    int rc;                     /* 0, SL_EINVAL or SL_ENOMEM */
    char *err;
    size_t errlen;
} save_ctx;

/* Writes "<prefix><path of keys[0..n)>: <why>" into err (when given); for refuse and
 * reject. */
static void say_path(char *err, size_t errlen, const char *prefix, const pkey *keys, int n,
                     const char *fmt, va_list ap)
{
    if (!err || !errlen)
        return;
    size_t at = 0;
    put(err, errlen, &at, prefix);
    put_path(err + at, errlen - at, keys, n);
    at += strlen(err + at);
    put(err, errlen, &at, ": ");
    if (at < errlen)
        vsnprintf(err + at, errlen - at, fmt, ap);
}

/* Refuses the state: "<path of keys[0..n)>: <why>". Returns false, for the walk to stop. */
static bool refuse(save_ctx *c, int n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool refuse(save_ctx *c, int n, const char *fmt, ...)
{
    c->rc = SL_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    say_path(c->err, c->errlen, "", c->keys, n, fmt, ap);
    va_end(ap);
    return false;
}

static bool no_memory(save_ctx *c)
{
    c->rc = SL_ENOMEM;
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "out of memory saving the state");
    return false;
}

static size_t slot(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 32) & (cap - 1);
}

/* Adds table t to the set: 1 if it was not there, 0 if it was, -1 out of memory. */
static int seen_add(save_ctx *c, const void *t)
{
    if (2 * (c->nseen + 1) > c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        const void **s = calloc(cap, sizeof *s);
        if (!s)
            return -1;
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->seen[i])
                continue;
            size_t j = slot(c->seen[i], cap);
            while (s[j])
                j = (j + 1) & (cap - 1);
            s[j] = c->seen[i];
        }
        free(c->seen);
        c->seen = s;
        c->cap = cap;
    }
    size_t j = slot(t, c->cap);
    for (; c->seen[j]; j = (j + 1) & (c->cap - 1))
        if (c->seen[j] == t)
            return 0;
    c->seen[j] = t;
    c->nseen++;
    return 1;
}

/* An integer value in int64 / uint64 range becomes a msgpack int (the packer picks the
 * smallest form), anything else a float64: fractions, NaN, the infinities, and -0 (whose
 * sign an int would lose). */
static int pack_number(msgpack_packer *pk, double d)
{
    if (d == floor(d) && !(d == 0 && signbit(d))) {
        if (d >= 0 && d < 18446744073709551616.0)           /* 2^64 */
            return msgpack_pack_uint64(pk, (uint64_t)d);
        if (d < 0 && d >= -9223372036854775808.0)           /* -2^63 */
            return msgpack_pack_int64(pk, (int64_t)d);
    }
    return msgpack_pack_double(pk, d);
}

/* Packs a string, number or boolean at idx (a key, or a value that is not a table). */
static int pack_scalar(lua_State *L, msgpack_packer *pk, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case LUA_TNUMBER:
        return pack_number(pk, lua_tonumber(L, idx));
    default: {
        /* A string (lua_tolstring would convert a number in place, and confuse lua_next). */
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len);
    }
    }
}

/* The key at idx into c->keys[n] (strings point into the Lua state, which holds them). */
static void note_key(lua_State *L, save_ctx *c, int idx, int n)
{
    pkey *k = &c->keys[n];
    k->type = lua_type(L, idx);
    if (k->type == LUA_TSTRING)
        k->s = lua_tolstring(L, idx, &k->len);
    else if (k->type == LUA_TNUMBER)
        k->n = lua_tonumber(L, idx);
    else
        k->b = lua_toboolean(L, idx);
}

static bool save_value(lua_State *L, save_ctx *c, int idx, int n);

/* Packs the table at idx, which keys[0..n) lead to, as a map. */
static bool save_table(lua_State *L, save_ctx *c, int idx, int n)
{
    if (n + 1 > MAX_DEPTH)
        return refuse(c, n, "tables nested more than %d deep (the state included) cannot be "
                      "saved", MAX_DEPTH);
    if (lua_getmetatable(L, idx))
        return refuse(c, n, "a table with a metatable cannot be saved (metatables are not "
                      "saved: the table would arrive without its behaviour)");
    int added = seen_add(c, lua_topointer(L, idx));
    if (added < 0)
        return no_memory(c);
    if (!added)
        return refuse(c, n, "this table is reached twice (a cycle, or a table shared by two "
                      "places): only a tree of tables can be saved");
    luaL_checkstack(L, 4, "state nesting");
    /* Count the entries, checking the keys; then pack them. */
    size_t count = 0;
    lua_pushnil(L);                                     // [nil]
    while (lua_next(L, idx)) {                          // [k, v]
        int t = lua_type(L, -2);
        if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
            return refuse(c, n, "a key of type %s cannot be saved (keys must be strings, "
                          "numbers or booleans)", t == TCDATA ? "cdata" : lua_typename(L, t));
        count++;
        lua_pop(L, 1);                                  // [k]
    }
    if (count > UINT32_MAX)
        return refuse(c, n, "a table of more than 2^32 entries cannot be saved");
    if (msgpack_pack_map(&c->pk, count))
        return no_memory(c);
    lua_pushnil(L);
    while (lua_next(L, idx)) {                          // [k, v]
        int top = lua_gettop(L);
        note_key(L, c, top - 1, n);
        if (pack_scalar(L, &c->pk, top - 1))
            return no_memory(c);
        if (!save_value(L, c, top, n + 1))
            return false;
        lua_pop(L, 1);                                  // [k]
    }
    return true;
}

/* Packs the value at idx, which keys[0..n) lead to. */
static bool save_value(lua_State *L, save_ctx *c, int idx, int n)
{
    int t = lua_type(L, idx);
    switch (t) {
    case LUA_TBOOLEAN:
    case LUA_TNUMBER:
    case LUA_TSTRING:
        return pack_scalar(L, &c->pk, idx) ? no_memory(c) : true;
    case LUA_TTABLE:
        return save_table(L, c, idx, n);
    case LUA_TFUNCTION:
        return refuse(c, n, "a function cannot be saved");
    case TCDATA:
        return refuse(c, n, "a cdata (an FFI value, such as a 64-bit integer like 1ULL) "
                      "cannot be saved: store a number or a string instead");
    case LUA_TTHREAD:
        return refuse(c, n, "a coroutine cannot be saved");
    case LUA_TUSERDATA:
        return refuse(c, n, "a userdata cannot be saved");
    case LUA_TLIGHTUSERDATA:
        return refuse(c, n, "a light userdata cannot be saved");
    default:
        return refuse(c, n, "a value of type %s cannot be saved", lua_typename(L, t));
    }
}

static int l_save(lua_State *L)    // [state, ctx] -> []
{
    save_ctx *c = lua_touserdata(L, 2);
    save_value(L, c, 1, 0);
    return 0;
}

int sl_lua_state_save(sl_lua *h, char **out, size_t *len, char *err, size_t errlen)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    *out = NULL;
    *len = 0;
    save_ctx c = {.err = err, .errlen = errlen};
    msgpack_sbuffer_init(&c.buf);
    msgpack_packer_init(&c.pk, &c.buf, msgpack_sbuffer_write);
    char msg[512];
    int rc = sl__lua_call(h, RT_STATE, 0, 1, msg, sizeof msg);     // [] -> [state]
    if (!rc) {
        lua_pushcfunction(L, l_save);
        lua_insert(L, -2);
        lua_pushlightuserdata(L, &c);                   // [l_save, state, ctx]
        rc = lua_pcall(L, 2, 0, 0);                     // -> [] or [err]
        if (rc) {
            const char *why = lua_tostring(L, -1);
            snprintf(msg, sizeof msg, "%s", why ? why : "(no message)");
            lua_pop(L, 1);
        }
    }
    if (rc) {       /* the walk itself raised: only memory can run out there */
        c.rc = rc == LUA_ERRMEM ? SL_ENOMEM : SL_EINVAL;
        if (err && errlen)
            snprintf(err, errlen, "saving the state: %s", msg);
    }
    free(c.seen);
    assert(lua_gettop(L) == top);
    (void)top;
    if (c.rc) {
        msgpack_sbuffer_destroy(&c.buf);
        return c.rc;
    }
    *len = c.buf.size;
    *out = msgpack_sbuffer_release(&c.buf);
    return 0;
}

/* ---- restoring -------------------------------------------------------------------------- */


typedef struct restore_ctx {
    const msgpack_object *root;
    pkey keys[MAX_DEPTH];       /* the path to the value being built */
    int rc;
    char *err;
    size_t errlen;
} restore_ctx;

static const char *kind(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "integer";
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "string";
    case MSGPACK_OBJECT_BIN: return "binary";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    default: return "ext";
    }
}

static bool reject(restore_ctx *c, int n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool reject(restore_ctx *c, int n, const char *fmt, ...)
{
    c->rc = SL_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    say_path(c->err, c->errlen, "saved state: ", c->keys, n, fmt, ap);
    va_end(ap);
    return false;
}

/* A map key into c->keys[n], or false if it cannot be a key of the state. */
static bool key_of(restore_ctx *c, const msgpack_object *k, int n)
{
    pkey *p = &c->keys[n];
    switch (k->type) {
    case MSGPACK_OBJECT_STR:
        *p = (pkey){.type = LUA_TSTRING, .s = k->via.str.ptr, .len = k->via.str.size};
        return true;
    case MSGPACK_OBJECT_BOOLEAN:
        *p = (pkey){.type = LUA_TBOOLEAN, .b = k->via.boolean};
        return true;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *p = (pkey){.type = LUA_TNUMBER, .n = (double)k->via.u64};
        return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *p = (pkey){.type = LUA_TNUMBER, .n = (double)k->via.i64};
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (isnan(k->via.f64))
            return reject(c, n, "a NaN key cannot be restored (Lua tables have none)");
        *p = (pkey){.type = LUA_TNUMBER, .n = k->via.f64};
        return true;
    default:
        return reject(c, n, "a key of type %s cannot be restored (keys must be strings, "
                      "numbers or booleans)", kind(k->type));
    }
}

static void push_key(lua_State *L, const pkey *k)
{
    if (k->type == LUA_TSTRING)
        lua_pushlstring(L, k->s, k->len);
    else if (k->type == LUA_TNUMBER)
        lua_pushnumber(L, k->n);
    else
        lua_pushboolean(L, k->b);
}

/* [] -> [value] (false: nothing pushed, why in c). o, which keys[0..n) lead to, is not nil. */
static bool push_object(lua_State *L, restore_ctx *c, const msgpack_object *o, int n)
{
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); return true;
    /* Lua numbers are doubles: integers beyond 2^53 come back rounded (host.h says so). */
    case MSGPACK_OBJECT_POSITIVE_INTEGER: lua_pushnumber(L, (lua_Number)o->via.u64); return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushnumber(L, (lua_Number)o->via.i64); return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, o->via.f64); return true;
    case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); return true;
    case MSGPACK_OBJECT_BIN: lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size); return true;
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        break;
    default:
        return reject(c, n, "a value of type %s cannot be restored", kind(o->type));
    }
    if (n + 1 > MAX_DEPTH)      /* (sl_msgpack_check refused it) */
        return reject(c, n, "containers nested more than %d deep", MAX_DEPTH);
    if ((o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : o->via.map.size) > INT_MAX)
        return reject(c, n, "a container of more than 2^31 entries cannot be restored");
    luaL_checkstack(L, 4, "state nesting");
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        /* An array (not what saving writes, but plain data): a table with keys 1..n. */
        const msgpack_object_array *a = &o->via.array;
        lua_createtable(L, (int)a->size, 0);            // [t]
        for (uint32_t i = 0; i < a->size; i++) {
            if (a->ptr[i].type == MSGPACK_OBJECT_NIL)
                continue;
            c->keys[n] = (pkey){.type = LUA_TNUMBER, .n = (double)i + 1};
            if (!push_object(L, c, &a->ptr[i], n + 1))
                return false;
            lua_rawseti(L, -2, (int)i + 1);
        }
        return true;
    }
    const msgpack_object_map *m = &o->via.map;
    lua_createtable(L, 0, (int)m->size);                // [t]
    for (uint32_t i = 0; i < m->size; i++) {
        if (!key_of(c, &m->ptr[i].key, n))
            return false;
        if (m->ptr[i].val.type == MSGPACK_OBJECT_NIL)
            continue;
        push_key(L, &c->keys[n]);                       // [t, k]
        if (!push_object(L, c, &m->ptr[i].val, n + 1))
            return false;
        lua_rawset(L, -3);                              // [t, k, v] -> [t]
    }
    return true;
}

static int l_restore(lua_State *L)     // [ctx] -> [state] (or [] when refused)
{
    restore_ctx *c = lua_touserdata(L, 1);
    return push_object(L, c, c->root, 0) ? 1 : 0;
}

int sl__lua_state_restore(sl_lua *h, const char *buf, size_t len, char *err, size_t errlen)
{
    bool too_deep = false;
    if (!sl_msgpack_check(buf, len, MAX_DEPTH, &too_deep))
        return sl_fail(err, errlen, SL_EINVAL, "saved state: %s", too_deep
                       ? "containers nested more than 32 deep"
                       : "not one msgpack value (malformed, truncated, or bytes after it)");
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return sl_fail(err, errlen, SL_ENOMEM, "out of memory restoring the state");
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(buf, len, &off, &zone, &root);
    int rc = 0;
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = sl_fail(err, errlen, SL_ENOMEM, "out of memory restoring the state");
    else if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        rc = sl_fail(err, errlen, SL_EINVAL, "saved state: malformed msgpack");
    else if (root.type != MSGPACK_OBJECT_MAP)
        rc = sl_fail(err, errlen, SL_EINVAL, "saved state: the top level must be a msgpack "
                     "map, not of type %s", kind(root.type));
    if (rc) {
        msgpack_zone_destroy(&zone);
        return rc;
    }
    lua_State *L = h->L;
    restore_ctx c = {.root = &root, .err = err, .errlen = errlen};
    lua_pushcfunction(L, l_restore);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 1, 0);                     // [l_restore, ctx] -> [state]
    if (st) {
        rc = st == LUA_ERRMEM ? SL_ENOMEM : SL_EINVAL;
        const char *why = lua_tostring(L, -1);
        sl_fail(err, errlen, rc, "restoring the state: %s", why ? why : "(no message)");
        lua_pop(L, 1);
    } else if (c.rc) {
        rc = c.rc;
        lua_pop(L, 1);                                  // [nil]
    } else {
        char msg[512];
        if (sl__lua_call(h, RT_SET_STATE, 1, 0, msg, sizeof msg))  // [state] -> []
            rc = sl_fail(err, errlen, SL_ENOMEM, "restoring the state: %s", msg);
    }
    msgpack_zone_destroy(&zone);
    return rc;
}
