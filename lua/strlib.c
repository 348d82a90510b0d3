/*
 * strlib.c: string.find, string.match, string.gmatch and string.gsub with a bounded run
 * time. The string library's own matcher backtracks without limit and never returns to Lua
 * on its way: string.find(("a"):rep(40), ("a*"):rep(40) .. "b") runs for longer than the
 * universe, and a plain find of a long needle in a long subject is quadratic. Nothing from
 * outside can stop a C function, so these versions stop themselves: they count their steps
 * and every STEP_POLL steps read the shared block's `stop`, which the watchdog (budget.c)
 * raises at the running call's deadline; past the deadline they raise the budget error.
 * The runtime puts them into the `string` table before any script runs, so scripts reach
 * them both as string.find and as ("x"):find.
 *
 * The matcher is Lua 5.1's (lstrlib.c, Copyright (C) 1994-2012 Lua.org, PUC-Rio, MIT
 * licence), with the step count added, recursion capped ("pattern too complex", as LuaJIT
 * and Lua 5.2 do) and the C API calls made to LuaJIT's.
 */
#include "lua/host_impl.h"

#include <lauxlib.h>

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#define L_ESC '%'
#define SPECIALS "^$*+?.([%-"
#define MAXCAPTURES 32
#define MAXDEPTH 200            /* nested match() calls: "pattern too complex" beyond */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define STEP_POLL 4096u         /* steps between two looks at sh->stop */

/* The error every budget stop raises (runtime.lua's BUDGET_ERR). */
#define BUDGET_ERR "script stopped: it ran past its time budget"

typedef struct match_state {
    const char *src_init, *src_end;
    lua_State *L;
    sl_lua *h;
    int level, depth;
    uint32_t steps;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[MAXCAPTURES];
} match_state;

/* Counts `cost` steps; now and then, raises the budget error once the deadline passed. */
static void step(match_state *ms, uint32_t cost)
{
    ms->steps += cost;
    if (ms->steps < STEP_POLL)
        return;
    ms->steps = 0;
    if (__atomic_load_n(&ms->h->sh->stop[0], __ATOMIC_RELAXED) && sl__lua_check(ms->h))
        luaL_error(ms->L, BUDGET_ERR);
}

static sl_lua *host_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static ptrdiff_t posrelat(ptrdiff_t pos, size_t len)
{
    /* relative string position: negative means back from end */
    if (pos < 0)
        pos += (ptrdiff_t)len + 1;
    return pos >= 0 ? pos : 0;
}

static int check_capture(match_state *ms, int l)
{
    l -= '1';
    if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
        return luaL_error(ms->L, "invalid capture index");
    return l;
}

static int capture_to_close(match_state *ms)
{
    int level = ms->level;
    for (level--; level >= 0; level--)
        if (ms->capture[level].len == CAP_UNFINISHED)
            return level;
    return luaL_error(ms->L, "invalid pattern capture");
}

static const char *classend(match_state *ms, const char *p)
{
    switch (*p++) {
    case L_ESC:
        if (*p == '\0')
            luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[':
        if (*p == '^')
            p++;
        do {    /* look for a `]' */
            if (*p == '\0')
                luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*(p++) == L_ESC && *p != '\0')
                p++;    /* skip escapes (e.g. `%]') */
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

static int match_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    case 'z': res = (c == 0); break;
    default: return (cl == c);
    }
    if (isupper(cl))
        res = !res;
    return res;
}

static int matchbracketclass(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (*(p + 1) == '^') {
        sig = 0;
        p++;    /* skip the `^' */
    }
    while (++p < ec) {
        if (*p == L_ESC) {
            p++;
            if (match_class(c, (unsigned char)*p))
                return sig;
        } else if (*(p + 1) == '-' && (p + 2 < ec)) {
            p += 2;
            if ((unsigned char)*(p - 2) <= c && c <= (unsigned char)*p)
                return sig;
        } else if ((unsigned char)*p == c) {
            return sig;
        }
    }
    return !sig;
}

static int singlematch(int c, const char *p, const char *ep)
{
    switch (*p) {
    case '.': return 1;     /* matches any char */
    case L_ESC: return match_class(c, (unsigned char)*(p + 1));
    case '[': return matchbracketclass(c, p, ep - 1);
    default: return ((unsigned char)*p == c);
    }
}

static const char *match(match_state *ms, const char *s, const char *p);

static const char *matchbalance(match_state *ms, const char *s, const char *p)
{
    if (*p == 0 || *(p + 1) == 0)
        luaL_error(ms->L, "unbalanced pattern");
    if (*s != *p)
        return NULL;
    int b = *p, e = *(p + 1), cont = 1;
    while (++s < ms->src_end) {
        step(ms, 1);
        if (*s == e) {
            if (--cont == 0)
                return s + 1;
        } else if (*s == b) {
            cont++;
        }
    }
    return NULL;    /* string ends out of balance */
}

static const char *max_expand(match_state *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;    /* counts maximum expand for item */
    while ((s + i) < ms->src_end && singlematch((unsigned char)*(s + i), p, ep)) {
        step(ms, 1);
        i++;
    }
    /* keeps trying to match with the maximum repetitions */
    while (i >= 0) {
        const char *res = match(ms, (s + i), ep + 1);
        if (res)
            return res;
        i--;    /* else didn't match; reduce 1 repetition to try again */
    }
    return NULL;
}

static const char *min_expand(match_state *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *res = match(ms, s, ep + 1);
        if (res != NULL)
            return res;
        else if (s < ms->src_end && singlematch((unsigned char)*s, p, ep))
            s++;    /* try with one more repetition */
        else
            return NULL;
    }
}

static const char *start_capture(match_state *ms, const char *s, const char *p, int what)
{
    int level = ms->level;
    if (level >= MAXCAPTURES)
        luaL_error(ms->L, "too many captures");
    ms->capture[level].init = s;
    ms->capture[level].len = what;
    ms->level = level + 1;
    const char *res = match(ms, s, p);
    if (res == NULL)    /* match failed? */
        ms->level--;    /* undo capture */
    return res;
}

static const char *end_capture(match_state *ms, const char *s, const char *p)
{
    int l = capture_to_close(ms);
    ms->capture[l].len = s - ms->capture[l].init;    /* close capture */
    const char *res = match(ms, s, p);
    if (res == NULL)    /* match failed? */
        ms->capture[l].len = CAP_UNFINISHED;        /* undo capture */
    return res;
}

static const char *match_capture(match_state *ms, const char *s, int l)
{
    l = check_capture(ms, l);
    size_t len = (size_t)ms->capture[l].len;
    step(ms, 1 + (uint32_t)(len / 16));
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *match(match_state *ms, const char *s, const char *p)
{
    if (++ms->depth > MAXDEPTH)
        luaL_error(ms->L, "pattern too complex");
    step(ms, 1);
init:   /* using goto's to optimize tail recursion */
    switch (*p) {
    case '(':   /* start capture */
        if (*(p + 1) == ')')    /* position capture? */
            s = start_capture(ms, s, p + 2, CAP_POSITION);
        else
            s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
        break;
    case ')':   /* end capture */
        s = end_capture(ms, s, p + 1);
        break;
    case L_ESC:
        switch (*(p + 1)) {
        case 'b':   /* balanced string? */
            s = matchbalance(ms, s, p + 2);
            if (s == NULL)
                break;
            p += 4;
            goto init;  /* else return match(ms, s, p+4); */
        case 'f': {     /* frontier? */
            p += 2;
            if (*p != '[')
                luaL_error(ms->L, "missing '[' after '%%f' in pattern");
            const char *ep = classend(ms, p);  /* points to what is next */
            char previous = (s == ms->src_init) ? '\0' : *(s - 1);
            if (matchbracketclass((unsigned char)previous, p, ep - 1) ||
                !matchbracketclass((unsigned char)*s, p, ep - 1)) {
                s = NULL;
                break;
            }
            p = ep;
            goto init;  /* else return match(ms, s, ep); */
        }
        default:
            if (isdigit((unsigned char)*(p + 1))) {     /* capture results (%0-%9)? */
                s = match_capture(ms, s, (unsigned char)*(p + 1));
                if (s == NULL)
                    break;
                p += 2;
                goto init;  /* else return match(ms, s, p+2) */
            }
            goto dflt;      /* case default */
        }
        break;
    case '\0':  /* end of pattern */
        break;  /* match succeeded */
    case '$':
        if (*(p + 1) == '\0') {     /* is the `$' the last char in pattern? */
            s = (s == ms->src_end) ? s : NULL;  /* check end of string */
            break;
        }
        goto dflt;
    default:
    dflt: {     /* it is a pattern item */
        const char *ep = classend(ms, p);  /* points to what is next */
        int m = s < ms->src_end && singlematch((unsigned char)*s, p, ep);
        switch (*ep) {
        case '?': {     /* optional */
            const char *res;
            if (m && ((res = match(ms, s + 1, ep + 1)) != NULL)) {
                s = res;
                break;
            }
            p = ep + 1;
            goto init;  /* else return match(ms, s, ep+1); */
        }
        case '*':   /* 0 or more repetitions */
            s = max_expand(ms, s, p, ep);
            break;
        case '+':   /* 1 or more repetitions */
            s = (m ? max_expand(ms, s + 1, p, ep) : NULL);
            break;
        case '-':   /* 0 or more repetitions (minimum) */
            s = min_expand(ms, s, p, ep);
            break;
        default:
            if (!m) {
                s = NULL;
                break;
            }
            s++;
            p = ep;
            step(ms, 1);
            goto init;  /* else return match(ms, s+1, ep); */
        }
        break;
    }
    }
    ms->depth--;
    return s;
}

/* Plain search (Lua 5.1's lmemfind), counting the bytes it compares. */
static const char *lmemfind(match_state *ms, const char *s1, size_t l1, const char *s2,
                            size_t l2)
{
    if (l2 == 0)
        return s1;      /* empty strings are everywhere */
    if (l2 > l1)
        return NULL;    /* avoids a negative `l1' */
    const char *init;   /* to search for a `*s2' inside `s1' */
    l2--;   /* 1st char will be checked by `memchr' */
    l1 = l1 - l2;   /* `s2' cannot be found after that */
    while (l1 > 0 && (init = memchr(s1, *s2, l1)) != NULL) {
        init++;     /* 1st char is already checked */
        step(ms, 1 + (uint32_t)((size_t)(init - s1) / 64) + (uint32_t)(l2 / 16));
        if (memcmp(init, s2 + 1, l2) == 0)
            return init - 1;
        l1 -= (size_t)(init - s1);  /* `s2' may be found after `init' */
        s1 = init;
    }
    return NULL;    /* not found */
}

static void push_onecapture(match_state *ms, int i, const char *s, const char *e)
{
    if (i >= ms->level) {
        if (i == 0)     /* ms->level == 0, too */
            lua_pushlstring(ms->L, s, (size_t)(e - s));    /* add whole match */
        else
            luaL_error(ms->L, "invalid capture index");
    } else {
        ptrdiff_t l = ms->capture[i].len;
        if (l == CAP_UNFINISHED)
            luaL_error(ms->L, "unfinished capture");
        if (l == CAP_POSITION)
            lua_pushinteger(ms->L, ms->capture[i].init - ms->src_init + 1);
        else
            lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
    }
}

static int push_captures(match_state *ms, const char *s, const char *e)
{
    int nlevels = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, nlevels, "too many captures");
    for (int i = 0; i < nlevels; i++)
        push_onecapture(ms, i, s, e);
    return nlevels;     /* number of strings pushed */
}

static void ms_init(match_state *ms, lua_State *L, const char *s, size_t ls)
{
    ms->L = L;
    ms->h = host_of(L);
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->level = ms->depth = 0;
    ms->steps = 0;
}

static int str_find_aux(lua_State *L, int find)
{
    size_t l1, l2;
    const char *s = luaL_checklstring(L, 1, &l1);
    const char *p = luaL_checklstring(L, 2, &l2);
    ptrdiff_t init = posrelat(luaL_optinteger(L, 3, 1), l1) - 1;
    if (init < 0)
        init = 0;
    else if ((size_t)init > l1) {
        lua_pushnil(L);     /* cannot find anything */
        return 1;
    }
    match_state ms;
    ms_init(&ms, L, s, l1);
    if (find && (lua_toboolean(L, 4) || strpbrk(p, SPECIALS) == NULL)) {
        /* do a plain search */
        const char *s2 = lmemfind(&ms, s + init, l1 - (size_t)init, p, l2);
        if (s2) {
            lua_pushinteger(L, s2 - s + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(s2 - s) + l2));
            return 2;
        }
    } else {
        int anchor = (*p == '^') ? (p++, 1) : 0;
        const char *s1 = s + init;
        do {
            const char *res;
            ms.level = ms.depth = 0;
            if ((res = match(&ms, s1, p)) != NULL) {
                if (find) {
                    lua_pushinteger(L, s1 - s + 1);     /* start */
                    lua_pushinteger(L, res - s);        /* end */
                    return push_captures(&ms, NULL, 0) + 2;
                }
                return push_captures(&ms, s1, res);
            }
        } while (s1++ < ms.src_end && !anchor);
    }
    lua_pushnil(L);     /* not found */
    return 1;
}

static int str_find(lua_State *L)
{
    return str_find_aux(L, 1);
}

static int str_match(lua_State *L)
{
    return str_find_aux(L, 0);
}

/* The iterator gmatch returns (upvalues: host, subject, pattern, position). */
static int gmatch_aux(lua_State *L)
{
    size_t ls;
    const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
    const char *p = lua_tostring(L, lua_upvalueindex(3));
    match_state ms;
    ms_init(&ms, L, s, ls);
    for (const char *src = s + (size_t)lua_tointeger(L, lua_upvalueindex(4));
         src <= ms.src_end; src++) {
        const char *e;
        ms.level = ms.depth = 0;
        if ((e = match(&ms, src, p)) != NULL) {
            lua_Integer newstart = e - s;
            if (e == src)
                newstart++;     /* empty match? go at least one position */
            lua_pushinteger(L, newstart);
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&ms, src, e);
        }
    }
    return 0;   /* not found */
}

static int str_gmatch(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);               /* [host, s, p] */
    lua_pushinteger(L, 0);          /* [host, s, p, 0] */
    lua_pushcclosure(L, gmatch_aux, 4);
    return 1;
}

static void add_s(match_state *ms, luaL_Buffer *b, const char *s, const char *e)
{
    size_t l;
    const char *news = lua_tolstring(ms->L, 3, &l);
    for (size_t i = 0; i < l; i++) {
        if (news[i] != L_ESC) {
            luaL_addchar(b, news[i]);
        } else {
            i++;    /* skip ESC */
            if (!isdigit((unsigned char)news[i])) {
                luaL_addchar(b, news[i]);
            } else if (news[i] == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                push_onecapture(ms, news[i] - '1', s, e);
                luaL_addvalue(b);   /* add capture to accumulated result */
            }
        }
    }
}

static void add_value(match_state *ms, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ms->L;
    switch (lua_type(L, 3)) {
    case LUA_TNUMBER:
    case LUA_TSTRING:
        add_s(ms, b, s, e);
        return;
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        push_onecapture(ms, 0, s, e);
        lua_gettable(L, 3);
        break;
    }
    if (!lua_toboolean(L, -1)) {    /* nil or false? */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));     /* keep original text */
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b);   /* add result to accumulator */
}

static int str_gsub(lua_State *L)
{
    size_t srcl;
    const char *src = luaL_checklstring(L, 1, &srcl);
    const char *p = luaL_checkstring(L, 2);
    int tr = lua_type(L, 3);
    int max_s = (int)luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
    int anchor = (*p == '^') ? (p++, 1) : 0;
    int n = 0;
    luaL_argcheck(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                     tr == LUA_TTABLE, 3, "string/function/table expected");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    match_state ms;
    ms_init(&ms, L, src, srcl);
    while (n < max_s) {
        ms.level = ms.depth = 0;
        const char *e = match(&ms, src, p);
        if (e) {
            n++;
            add_value(&ms, &b, src, e);
        }
        if (e && e > src) {     /* non empty match? */
            src = e;    /* skip it */
        } else if (src < ms.src_end) {
            step(&ms, 1);
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);  /* number of substitutions */
    return 2;
}

void sl__lua_push_strlib(sl_lua *h)
{
    static const luaL_Reg fns[] = {
        {"find", str_find}, {"match", str_match}, {"gmatch", str_gmatch}, {"gsub", str_gsub},
        {NULL, NULL},
    };
    lua_State *L = h->L;
    lua_createtable(L, 0, 4);
    for (const luaL_Reg *r = fns; r->name; r++) {
        lua_pushlightuserdata(L, h);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
}
