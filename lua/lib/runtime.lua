-- runtime.lua: the Lua half of the script host (lua/*.c is the C half). Trusted code:
-- it builds the sandbox each script set runs in, loads designer scripts through a loop
-- instrumenter, owns entity props and the persistent state, and runs the batch loops that
-- call designers' functions once per pair or event without a C-to-Lua call each.
--
-- lua/host.c runs this chunk with two light userdata (the shared block and the API table), a
-- boolean (whether the operator allowed unsafe scripts), the C declarations of those two
-- (SL_LUA_BINDING in host_impl.h, the one text of them) and the bounded pattern functions
-- (strlib.c), and keeps the table it returns.
local ffi = require "ffi"
local shared_p, api_p, unsafe, binding_cdef, bounded = ...
-- The string library's matcher cannot be stopped once it runs: strlib.c's versions stop at
-- the budget. They replace the originals in `string` itself, which is also the string
-- metatable's __index, so that ("x"):find(...) is bounded too.
for k, f in pairs(bounded) do string[k] = f end
-- string.dump is not for scripts: taken out of `string` itself, since ("").dump reaches it
-- through the string metatable (unsafe scripts keep it).
if not unsafe then string.dump = nil end
-- C modules (lua-cjson) only from the system's Lua directory, never from the working one.
package.cpath = "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/lib/lua/5.1/?.so"

-- The engine's types the binding names, mirrored from engine/space.h (test lua_sandbox
-- checks that the two agree), then the binding itself.
ffi.cdef [[
typedef struct sl_lod_band { float distance; uint32_t period; } sl_lod_band;
typedef struct sl_entity_info {
    uint64_t id;
    float x, y, radius;
    float z;
    uint32_t layer, mask;
    uint32_t sees;
    float hysteresis;
    bool own_hysteresis;
    uint32_t nlod;
    sl_lod_band lod[8];
    bool always;
    uint32_t cap;
    float cap_margin;
    int32_t priority;
    uint32_t candidates;
    uint32_t group;
} sl_entity_info;
typedef struct sl_rule_pair { uint64_t watcher, target; } sl_rule_pair;
typedef struct sl_query {
    float x, y, r;
    float x1, y1;
    bool rect;
    uint32_t mask;
    uint32_t limit;
    bool d3;
    float z, z1;
} sl_query;
typedef struct sl_query_hit { uint64_t id; float x, y, d2; float z; } sl_query_hit;
typedef struct sl_event { uint64_t watcher, target; uint32_t kind, reason; } sl_event;
typedef struct sl_region {
    int kind;
    float x, y, r;
    float x1, y1;
    const float *xy;
    uint32_t n;
    uint32_t mask;
} sl_region;
typedef struct sl_region_event { uint64_t region, entity; uint32_t kind; } sl_region_event;
unsigned long long strtoull(const char *s, char **end, int base);
char *realpath(const char *path, char *resolved);
void free(void *p);
]]
ffi.cdef(binding_cdef)

local SH = ffi.cast("sl_lua_shared *", shared_p)
local API = ffi.cast("sl_lua_api *", api_p)
local HOST, SPACE = API.host, API.space
local cast, tonumber, type, error, pairs, select = ffi.cast, tonumber, type, error, pairs, select
local PAIRS, EVS, U8 = ffi.typeof("const sl_rule_pair *"), ffi.typeof("const sl_event *"),
    ffi.typeof("uint8_t *")
local REVS = ffi.typeof("const sl_region_event *")
local INFO = ffi.new("sl_entity_info")
-- sightline.query's arguments and answer (the hits are the space's until its next query).
local QUERY = ffi.new("sl_query")
local HITS = ffi.new("const sl_query_hit *[1]")
local NHITS = ffi.new("size_t[1]")

-- The designer functions' numbers, for SH.fn: sl_lua_fn in lua/host.h.
local FN = {visible = 1, on_enter = 2, on_leave = 3, on_stay = 4, on_tick = 5, selftest = 6,
            on_reload = 7, load = 8, on_add = 9, on_remove = 10, on_prop = 11,
            on_region_enter = 12, on_region_leave = 13}

local RT = {}
local BUDGET_ERR = "script stopped: it ran past its time budget"

-- The loop check, inlined into traces: a look at `stop`, which the watchdog thread raises
-- at the deadline (budget.c); the clock then confirms. Once the set is faulted (or a build
-- overran) `stop` stays raised, so every later check raises. LuaJIT has no volatile loads
-- for the FFI: a load from a fixed address that nothing in the loop writes is hoisted out
-- of a compiled loop, and would never see the watchdog's store. So `stop` has two slots,
-- both raised, and each check reads the one its sequence number picks: the address varies
-- from one iteration to the next, and the load stays in the loop.
local band = bit.band
local function slow_check()
    if SH.faulted ~= 0 or API.check(HOST) ~= 0 then
        error(BUDGET_ERR, 0)
    end
end
local function chk()
    local q = SH.seq + 1
    SH.seq = q
    if SH.stop[band(q, 1)] ~= 0 then slow_check() end
end

---------------------------------------------------------------------------------------------
-- Ids. Scripts see an entity id as a Lua number when it is below 2^53 (exact), otherwise as
-- its decimal string. u64() turns either back into the uint64 the core uses.
local TWO53 = 9007199254740992
local function bigid(u)
    return (tostring(u):gsub("ULL$", ""))
end
local function luaid(u)
    local d = tonumber(u)
    if d < TWO53 then return d end
    return bigid(u)
end
local function u64(id, level)
    if type(id) == "number" then
        if id >= 0 and id < TWO53 and id % 1 == 0 then return id end
    elseif type(id) == "string" and id:match("^%d+$") and #id <= 20 then
        local v = ffi.C.strtoull(id, nil, 10)
        if bigid(v) == id then return v end
    end
    error("bad entity id " .. tostring(id), (level or 1) + 1)
end

---------------------------------------------------------------------------------------------
-- Props, stored by key: COL[key][id] = value. A rule reads `t.props.team` as one lookup in
-- the `team` column (an array when ids are dense), not a chain of per-entity tables. KEYS[id]
-- lists the keys id has, so that forgetting an entity costs its own props only, however many
-- keys there are in all; NCOL[key] counts the ids a column holds, so that an emptied column
-- goes. Ids are stored as scripts see them (luaid: a number below 2^53), whatever form the
-- caller gave ("1" is 1).
-- For the game's limits (RT.set_prop): NKEYS counts the columns (distinct keys), KEYN[id]
-- the props of id, KEYB[id] their bytes (keys, and string values; 8 for other values).
local COL, KEYS, NCOL = {}, {}, {}
local NKEYS, KEYN, KEYB = 0, {}, {}
local function ro_error() error("props are read-only here: use sightline.set_prop", 2) end

local function prop_bytes(key, value)
    if value == nil then return 0 end
    return #key + (type(value) == "string" and #value or 8)
end

local function put_prop(id, key, value)
    local c = COL[key]
    local old = c and c[id]
    if value == nil then
        if old == nil then return end
        c[id] = nil
        local ks = KEYS[id]
        ks[key] = nil
        if next(ks) == nil then KEYS[id], KEYN[id], KEYB[id] = nil, nil, nil
        else KEYN[id], KEYB[id] = KEYN[id] - 1, KEYB[id] - prop_bytes(key, old) end
        local n = NCOL[key] - 1
        if n == 0 then COL[key], NCOL[key], NKEYS = nil, nil, NKEYS - 1 else NCOL[key] = n end
        return
    end
    if c == nil then
        c = {}
        COL[key], NCOL[key], NKEYS = c, 0, NKEYS + 1
    end
    if old == nil then
        NCOL[key] = NCOL[key] + 1
        local ks = KEYS[id]
        if ks == nil then
            ks = {}
            KEYS[id], KEYN[id], KEYB[id] = ks, 0, 0
        end
        ks[key] = true
        KEYN[id] = KEYN[id] + 1
    end
    KEYB[id] = KEYB[id] + prop_bytes(key, value) - prop_bytes(key, old)
    c[id] = value
end

-- The props of whichever entity `view` shows at the time of the access.
local function props_view(view)
    return setmetatable({}, {
        __index = function(_, k)
            local c = COL[k]
            if c ~= nil then return c[rawget(view, "id")] end
        end,
        __newindex = ro_error,
        __metatable = false,
    })
end

local function props_copy(id)
    local copy = {}
    id = luaid(u64(id, 2))
    local ks = KEYS[id]
    if ks then
        for k in pairs(ks) do copy[k] = COL[k][id] end
    end
    return copy
end

local function check_prop(key, value, level)
    if type(key) ~= "string" then error("prop key must be a string", level + 1) end
    local t = type(value)
    if t ~= "number" and t ~= "string" and t ~= "boolean" and t ~= "nil" then
        error("prop " .. key .. ": value must be a number, string, boolean or nil", level + 1)
    end
end

-- An entity's owner (sl_lua_config.owner): an opaque number, nil for none.
local function owner_of(u)
    local o = API.owner(HOST, u)
    if o == 0 then return nil end
    return luaid(o)
end

-- Entity views: `id` is a field; everything else is read from the core when asked for.
local FIELD = {x = 1, y = 2, radius = 3, layer = 4, mask = 5, hysteresis = 6, always = 7,
               cap = 8, priority = 9, group = 10, z = 11}
local view_mt = {
    __index = function(v, k)
        if k == "owner" then return owner_of(u64(v.id)) end
        local f = FIELD[k]
        if not f or API.get(SPACE, u64(v.id), INFO) ~= 0 then return nil end
        if f == 1 then return INFO.x elseif f == 2 then return INFO.y
        elseif f == 3 then return INFO.radius elseif f == 4 then return INFO.layer
        elseif f == 6 then return INFO.hysteresis elseif f == 7 then return INFO.always
        elseif f == 8 then return INFO.cap elseif f == 9 then return INFO.priority
        elseif f == 10 then return INFO.group elseif f == 11 then return INFO.z end
        return INFO.mask
    end,
    __newindex = function()
        error("entity views are read-only: use sightline.set_prop / set_radius / set_layer", 2)
    end,
    __metatable = false,
}
local function new_view(id)
    local v = {id = id}
    v.props = props_view(v)
    return setmetatable(v, view_mt)
end
-- The batch loops' two reused views: only their id changes from one pair to the next.
local W, T = new_view(0), new_view(0)

---------------------------------------------------------------------------------------------
-- What scripts may call. Changes queue up and apply at the end of the tick.
-- While a set is being built (RT.build), its changes wait in BUILD_CHG: only a set that
-- replaces the running one has them applied (RT.swap); a refused one drops them (RT.cancel).
local CHG, NCHG = {}, 0
local BUILD_CHG = nil
local function queue(op, id, a, b)
    if BUILD_CHG then
        BUILD_CHG[#BUILD_CHG + 1] = {op, id, a, b}
        return
    end
    NCHG = NCHG + 1
    CHG[NCHG] = {op, id, a, b}
end

local cjson = require "cjson"
-- lua-cjson for scripts, bounded like the rest of the library (budget.c): its C code cannot
-- be stopped, so decode takes at most JSON_TEXT_MAX bytes and encode at most JSON_VALUES_MAX
-- values, counted first by an instrumented walk (a slow machine encodes a million numbers
-- in about half a second).
local JSON_TEXT_MAX, JSON_VALUES_MAX, JSON_DEPTH_MAX = 1048576, 100000, 1000
local raw_encode, raw_decode = cjson.encode, cjson.decode
local function count_values(v, n, depth)
    if type(v) ~= "table" then return n + 1 end
    if depth > JSON_DEPTH_MAX then
        error("cjson.encode: nested more than " .. JSON_DEPTH_MAX .. " deep", 0)
    end
    n = n + 1
    for k, x in pairs(v) do
        chk()
        n = count_values(x, n, depth + 1)
        if n > JSON_VALUES_MAX then
            error("cjson.encode: more than " .. JSON_VALUES_MAX .. " values", 0)
        end
    end
    return n
end
local function cjson_encode(v)
    count_values(v, 0, 0)
    return raw_encode(v)
end
local function cjson_decode(s)
    if type(s) == "string" and #s > JSON_TEXT_MAX then
        error("cjson.decode: text longer than " .. JSON_TEXT_MAX .. " bytes", 2)
    end
    return raw_decode(s)
end
local STATE = {}        -- survives reloads (sightline.state)
local BUILD_STATE = nil -- the copy a set being built sees, until RT.swap makes it STATE
local TICK = 0

local function log(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    API.log(HOST, table.concat(parts, "\t"))
end

local function emit(watcher, name, payload)
    local w = u64(watcher, 2)
    if type(name) ~= "string" then error("emit: name must be a string", 2) end
    local js = payload == nil and "null" or cjson_encode(payload)
    if API.emit(HOST, w, name, #name, js, #js) ~= 0 then error("emit: out of memory", 2) end
end

local api = {
    emit = emit,
    log = log,
    state = STATE,
    set_prop = function(id, key, value)
        local u = u64(id, 2)
        check_prop(key, value, 2)
        queue("prop", luaid(u), key, value)
    end,
    set_radius = function(id, r)
        u64(id, 2)
        if type(r) ~= "number" then error("set_radius: radius must be a number", 2) end
        queue("radius", id, r)
    end,
    set_hysteresis = function(id, h)
        u64(id, 2)
        if h ~= nil and type(h) ~= "number" then
            error("set_hysteresis: hysteresis must be a number, or nil for the space's", 2)
        end
        queue("hysteresis", id, h == nil and -1 or h)
    end,
    set_always = function(id, on)
        u64(id, 2)
        if type(on) ~= "boolean" then error("set_always: on must be true or false", 2) end
        queue("always", id, on)
    end,
    set_cap = function(id, n, margin)
        u64(id, 2)
        if type(n) ~= "number" or n < 0 or n % 1 ~= 0 or n >= 4294967296 then
            error("set_cap: n must be a whole number >= 0 (0 lifts the cap)", 2)
        end
        if margin ~= nil and type(margin) ~= "number" then
            error("set_cap: margin must be a number >= 0, or nil for 0", 2)
        end
        queue("cap", id, n, margin or 0)
    end,
    set_group = function(id, g)
        u64(id, 2)
        if type(g) ~= "number" or g < 0 or g % 1 ~= 0 or g >= 4294967296 then
            error("set_group: group must be a whole number 1..4294967295, or 0 for none", 2)
        end
        queue("group", id, g)
    end,
    set_priority = function(id, p)
        u64(id, 2)
        if type(p) ~= "number" or p % 1 ~= 0 or p < -2147483648 or p > 2147483647 then
            error("set_priority: priority must be a whole number in the int32 range", 2)
        end
        queue("priority", id, p)
    end,
    relate = function(w, t, kind)
        u64(w, 2)
        u64(t, 2)
        local k = kind == nil and 0 or kind == "force" and 1 or kind == "never" and 2 or nil
        if k == nil then error("relate: kind must be \"force\", \"never\" or nil", 2) end
        queue("relate", w, t, k)
    end,
    set_lod = function(id, bands)
        u64(id, 2)
        if bands ~= nil and type(bands) ~= "table" then
            error("set_lod: bands must be a table of {distance, period} pairs, or nil", 2)
        end
        local copy = {}
        for i, b in ipairs(bands or {}) do
            if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" then
                error("set_lod: band " .. i .. " is not {distance, period}", 2)
            end
            copy[i] = {b[1], b[2]}
        end
        queue("lod", id, copy)
    end,
    set_layer = function(id, layer)
        u64(id, 2)
        if type(layer) ~= "number" then error("set_layer: layer must be a number", 2) end
        queue("layer", id, layer)
    end,
    touch = function(id)
        u64(id, 2)
        queue("touch", id)
    end,
    set_region = function(id, shape)
        u64(id, 2)
        if type(shape) ~= "table" then
            error("set_region: give a table {kind = \"circle\" | \"rect\" | \"poly\", ...}", 2)
        end
        local function num(k, v)
            if type(v) ~= "number" then error("set_region: " .. k .. " must be a number", 3) end
            return v
        end
        local mask = shape.mask == nil and 4294967295 or num("mask", shape.mask)
        if mask < 0 or mask >= 4294967296 or mask % 1 ~= 0 then
            error("set_region: mask is a uint32", 2)
        end
        local spec
        if shape.kind == "circle" then
            spec = {0, mask, num("x", shape.x), num("y", shape.y), num("r", shape.r)}
        elseif shape.kind == "rect" then
            spec = {1, mask, num("x", shape.x), num("y", shape.y), num("x1", shape.x1),
                    num("y1", shape.y1)}
        elseif shape.kind == "poly" then
            local p = shape.points
            if type(p) ~= "table" or #p % 2 ~= 0 or #p < 6 or #p > 128 then
                error("set_region: points is {x1, y1, x2, y2, ...}: 3 to 64 vertices", 2)
            end
            spec = {2, mask}
            for i = 1, #p do spec[i + 2] = num("points[" .. i .. "]", p[i]) end
        else
            error("set_region: kind must be \"circle\", \"rect\" or \"poly\"", 2)
        end
        queue("region", id, spec)
    end,
    remove_region = function(id)
        u64(id, 2)
        queue("unregion", id)
    end,
    in_region = function(region, id)
        return API.in_region(SPACE, u64(region, 2), u64(id, 2))
    end,
    get = function(id)
        local u = u64(id, 2)
        if API.get(SPACE, u, INFO) ~= 0 then return nil end
        return new_view(luaid(u))
    end,
    props = props_copy,
    owner = function(id)
        return owner_of(u64(id, 2))
    end,
    tick = function() return TICK end,
    query = function(q)
        if type(q) ~= "table" then
            error("query: give a table {x=, y=, r=} or {x=, y=, x1=, y1=} (in a 3D space " ..
                  "also z= for a sphere, z= and z1= for a box)", 2)
        end
        local rect = q.x1 ~= nil or q.y1 ~= nil
        local function num(k, v)
            if type(v) ~= "number" then error("query: " .. k .. " must be a number", 3) end
            return v
        end
        QUERY.x, QUERY.y = num("x", q.x), num("y", q.y)
        QUERY.rect = rect
        -- 3D spaces: z with r is a sphere, z and z1 with x1 and y1 a box (the engine refuses
        -- them in a flat space); without z the query covers every height.
        QUERY.d3 = q.z ~= nil or q.z1 ~= nil
        QUERY.z, QUERY.z1 = 0, 0
        if QUERY.d3 then
            QUERY.z = num("z", q.z)
            if rect then QUERY.z1 = num("z1", q.z1)
            elseif q.z1 ~= nil then error("query: z1 goes with a box (x1, y1), not r", 2) end
        end
        if rect then
            QUERY.x1, QUERY.y1 = num("x1", q.x1), num("y1", q.y1)
        else
            QUERY.r = num("r", q.r)
        end
        local layers = q.layers == nil and 4294967295 or num("layers", q.layers)
        local limit = q.limit == nil and 0 or num("limit", q.limit)
        if layers < 0 or layers >= 4294967296 or layers % 1 ~= 0 then
            error("query: layers is a uint32 mask", 2)
        end
        if limit < 0 or limit >= 4294967296 or limit % 1 ~= 0 then
            error("query: limit is a whole number >= 0", 2)
        end
        QUERY.mask, QUERY.limit = layers, limit
        if API.query(SPACE, QUERY, HITS, NHITS) ~= 0 then
            error("query: " .. ffi.string(API.error(SPACE)), 2)
        end
        local out, h = {}, HITS[0]
        for i = 0, tonumber(NHITS[0]) - 1 do
            chk()
            out[i + 1] = luaid(h[i].id)
        end
        return out
    end,
}

---------------------------------------------------------------------------------------------
-- The loop instrumenter: inserts a call to the check after every `do` and `repeat`, at the
-- start of every function body and before every `goto`, on the same line, so that even a
-- JIT-compiled loop passes through it (debug hooks do not fire inside compiled traces).
local CHK = "__sl_chk__"
local function instrument(src, name)
    local out, n, i, len = {"local " .. CHK .. " = ...; "}, 1, 1, #src
    local want_params, in_params = false, false
    local function put(s) n = n + 1; out[n] = s end
    if src:sub(1, 1) == "#" then            -- a #! line: keep the line, drop its text
        local e = src:find("\n", 1, true) or len + 1
        i = e
    end
    while i <= len do
        local c = src:sub(i, i)
        local j
        if c:match("%s") then
            j = src:find("[^%s]", i) or len + 1
            put(src:sub(i, j - 1))
        elseif c == "-" and src:sub(i, i + 1) == "--" then
            local eq = src:match("^%[(=*)%[", i + 2)
            if eq then
                local _, e = src:find("]" .. eq .. "]", i, true)
                if not e then error(name .. ": unfinished long comment", 0) end
                j = e + 1
            else
                j = src:find("\n", i, true) or len + 1
            end
            put(src:sub(i, j - 1))
        elseif c == "[" and src:match("^%[=*%[", i) then
            local eq = src:match("^%[(=*)%[", i)
            local _, e = src:find("]" .. eq .. "]", i, true)
            if not e then error(name .. ": unfinished long string", 0) end
            j = e + 1
            put(src:sub(i, j - 1))
        elseif c == '"' or c == "'" then
            j = i + 1
            while true do
                local d = src:sub(j, j)
                if d == "" or d == "\n" then error(name .. ": unfinished string", 0) end
                if d == "\\" then
                    j = j + 2
                elseif d == c then
                    j = j + 1
                    break
                else
                    j = j + 1
                end
            end
            put(src:sub(i, j - 1))
        elseif c:match("[%a_]") then
            local word = src:match("^[%a_][%w_]*", i)
            j = i + #word
            if word == CHK then error(name .. ": the name " .. CHK .. " is reserved", 0) end
            if word == "goto" then put(CHK .. "() ") end
            put(word)
            if word == "do" or word == "repeat" then put(" " .. CHK .. "()") end
            if word == "function" then want_params = true end
        elseif c:match("%d") or (c == "." and src:match("^%.%d", i)) then
            local num = src:match("^0[xX][%x%.]*[pP]?[-+]?%x*", i) or
                        src:match("^[%d%.]+[eE][-+]?%d+", i) or src:match("^[%d%.]+", i)
            num = num .. (src:match("^[%a_]*", i + #num) or "")      -- 10ULL, 1i
            j = i + #num
            put(num)
        else
            j = i + 1
            put(c)
            if c == "(" and want_params then
                want_params, in_params = false, true
            elseif c == ")" and in_params then
                in_params = false
                put(" " .. CHK .. "()")
            end
        end
        i = j
    end
    return table.concat(out)
end

---------------------------------------------------------------------------------------------
-- Script sets. Each set has its own sandbox env and module cache; the running set is CUR.
local CUR = nil
local HANDLERS = {"visible", "on_enter", "on_stay", "on_leave", "on_tick", "selftest",
                  "on_reload", "on_add", "on_remove", "on_prop", "on_region_enter",
                  "on_region_leave"}

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
end

-- The whole file at path, or nil and the reason.
local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("*a")
    f:close()
    return s
end

local function safe_rel(rel, level)
    if type(rel) ~= "string" or rel == "" or rel:sub(1, 1) == "/" or rel:find("\\", 1, true)
        or ("/" .. rel .. "/"):find("/%.%./") or rel:find("%z") then
        error("path " .. tostring(rel) .. " is outside the script directory", level + 1)
    end
    return rel
end

-- table.sort for scripts: the C one cannot be stopped (a million numbers take most of a
-- second on a slow machine), this one checks the budget as it goes. Quicksort with a
-- median of three and insertion sort for short runs; like the C one it is not stable, and
-- raises "invalid order function for sorting" when `lt` is inconsistent enough to run off
-- the array.
local function default_lt(a, b) return a < b end
local function sort(t, lt)
    if type(t) ~= "table" then
        error("bad argument #1 to 'sort' (table expected, got " .. type(t) .. ")", 2)
    end
    if lt ~= nil and type(lt) ~= "function" then
        error("bad argument #2 to 'sort' (function expected, got " .. type(lt) .. ")", 2)
    end
    lt = lt or default_lt
    local stack, top = {1, #t}, 2
    while top > 0 do
        local lo, hi = stack[top - 1], stack[top]
        top = top - 2
        while hi - lo > 12 do
            chk()
            local mid = lo + (hi - lo) / 2
            mid = mid - mid % 1
            if lt(t[mid], t[lo]) then t[mid], t[lo] = t[lo], t[mid] end
            if lt(t[hi], t[mid]) then
                t[hi], t[mid] = t[mid], t[hi]
                if lt(t[mid], t[lo]) then t[mid], t[lo] = t[lo], t[mid] end
            end
            local p = t[mid]
            t[mid], t[hi - 1] = t[hi - 1], p
            local i, j = lo, hi - 1
            while true do
                chk()
                i = i + 1
                while lt(t[i], p) do
                    if i >= hi then error("invalid order function for sorting", 2) end
                    i = i + 1
                end
                j = j - 1
                while lt(p, t[j]) do
                    if j <= lo then error("invalid order function for sorting", 2) end
                    j = j - 1
                end
                if j < i then break end
                t[i], t[j] = t[j], t[i]
            end
            t[hi - 1], t[i] = t[i], t[hi - 1]
            -- The smaller side next, the larger one later: the stack stays O(log n).
            if i - lo < hi - i then
                stack[top + 1], stack[top + 2] = i + 1, hi
                hi = i - 1
            else
                stack[top + 1], stack[top + 2] = lo, i - 1
                lo = i + 1
            end
            top = top + 2
        end
        for i = lo + 1, hi do
            chk()
            local v, j = t[i], i - 1
            while j >= lo and lt(v, t[j]) do
                t[j + 1] = t[j]
                j = j - 1
            end
            t[j + 1] = v
        end
    end
end

-- The real path of path (symlinks resolved), or nil.
local function real_path(path)
    local p = ffi.C.realpath(path, nil)
    if p == nil then return nil end
    local s = ffi.string(p)
    ffi.C.free(p)
    return s
end

-- Reads rel, a path safe_rel accepted, in dir, unless it resolves (through symlinks) to a
-- file outside dir. Returns the text, or nil and the reason.
local function read_inside(dir, rel)
    local root, real = real_path(dir), real_path(dir .. "/" .. rel)
    if not real then return nil, rel .. ": No such file or directory" end
    if not root or real:sub(1, #root + 1) ~= root .. "/" then
        return nil, rel .. " leads outside the script directory"
    end
    return read_file(real)
end

local function new_env(dir)
    local env, loaded = {}, {}
    local real_pcall = pcall
    -- pcall / xpcall that cannot swallow the budget stop.
    local function rethrow(ok, ...)
        if not ok and SH.faulted ~= 0 then error((...), 0) end
        return ok, ...
    end
    for _, k in ipairs({"assert", "error", "ipairs", "next", "pairs", "select", "tonumber",
                        "tostring", "type", "unpack", "rawequal", "rawget",
                        "setmetatable", "getmetatable", "_VERSION"}) do
        env[k] = _G[k]
    end
    env.pcall = function(f, ...) return rethrow(real_pcall(f, ...)) end
    env.xpcall = function(f, h) return rethrow(xpcall(f, h)) end
    env.print = log
    env.math, env.table, env.bit, env.coroutine = copy(math), copy(table), copy(bit),
        copy(coroutine)
    env.table.sort = sort
    env.string = copy(string)
    env.string.dump = nil
    env.os = {time = os.time, clock = os.clock, date = os.date, difftime = os.difftime}
    env.sightline = copy(api)
    env.sightline.read_file = function(rel)
        local s, err = read_inside(dir, safe_rel(rel, 2))
        if not s then error("read_file: " .. tostring(err), 2) end
        return s
    end
    env.emit = emit
    if unsafe then      -- the operator's opt-in: the whole standard library
        env.os, env.string = os, string
        for k, v in pairs(_G) do if env[k] == nil then env[k] = v end end
    end
    local function load_module(rel)
        local path = dir .. "/" .. rel
        local src, err = read_inside(dir, rel)
        if not src then return nil, err end
        local fn, perr = loadstring(instrument(src, rel), "@" .. path)
        if not fn then error(perr, 0) end
        setfenv(fn, env)
        return fn
    end
    env.require = function(name)
        if type(name) ~= "string" then error("require: module name must be a string", 2) end
        if loaded[name] ~= nil then return loaded[name] end
        if name == "cjson" then
            loaded[name] = copy(cjson)
            loaded[name].encode, loaded[name].decode = cjson_encode, cjson_decode
            loaded[name].new = nil      -- an instance would bypass the bounds
            return loaded[name]
        end
        if not name:match("^[%w_]+[%w_%.]*$") or name:find("..", 1, true) then
            error("require: bad module name " .. name, 2)
        end
        local rel = name:gsub("%.", "/") .. ".lua"
        local fn, err = load_module(rel)
        if not fn and unsafe then return require(name) end
        if not fn then error("require: no module " .. name .. " in the script directory ("
                             .. tostring(err) .. ")", 2) end
        local r = fn(chk)
        if r == nil then r = true end
        loaded[name] = r
        return r
    end
    return env, load_module
end

-- A deep copy of the persistent state, for a set being built: whatever it does to the state
-- while loading (a migration, on_reload) stays in the copy unless the set replaces the
-- running one. Tables (also as keys) are copied once each, cycles and sharing kept, their
-- metatables shared; other values are kept as they are. Instrumented: the build's budget.
local function deep_copy(v, seen)
    if type(v) ~= "table" then return v end
    local c = seen[v]
    if c then return c end
    c = {}
    seen[v] = c
    for k, x in next, v do
        chk()
        c[deep_copy(k, seen)] = deep_copy(x, seen)
    end
    local mt = debug.getmetatable(v)
    if mt then debug.setmetatable(c, mt) end
    return c
end

-- Builds a set from dir: load init.lua, run it, find and check the handlers, run selftest,
-- lock the globals, call on_reload(state). Any error aborts the build (the caller keeps the
-- old set, and calls RT.cancel): the set works on a copy of the state and its changes wait,
-- so that a refused set changes nothing.
function RT.build(dir)
    BUILD_CHG = {}
    BUILD_STATE = deep_copy(STATE, {})
    local env, load_module = new_env(dir)
    env.sightline.state = BUILD_STATE
    SH.fn = FN.load
    local fn, err = load_module("init.lua")
    if not fn then error("cannot load " .. dir .. "/init.lua: " .. tostring(err), 0) end
    local ret = fn(chk)
    local src = type(ret) == "table" and ret or env
    local set = {}
    for _, h in ipairs(HANDLERS) do
        local f = rawget(src, h)
        if f ~= nil and type(f) ~= "function" then
            error(h .. " must be a function, not a " .. type(f), 0)
        end
        set[h] = f
    end
    if set.selftest then
        SH.fn = FN.selftest
        local ok, why = set.selftest()
        if ok == false then error("selftest failed: " .. tostring(why), 0) end
    end
    setmetatable(env, {__newindex = function(_, k)
        error("assignment to undeclared global '" .. tostring(k) .. "'", 2)
    end})
    if set.on_reload then
        SH.fn = FN.on_reload
        set.on_reload(BUILD_STATE)
    end
    return set
end

-- A build failed: its state copy and its changes go.
function RT.cancel()
    BUILD_CHG, BUILD_STATE = nil, nil
end

-- Makes `set` the running one, with the state it was built on and its changes queued;
-- returns whether it has a visibility rule, whether it has any enter / stay / leave
-- handler, and whether it has a lifecycle hook.
function RT.swap(set)
    CUR = set
    STATE = BUILD_STATE
    api.state = STATE
    for _, c in ipairs(BUILD_CHG) do
        NCHG = NCHG + 1
        CHG[NCHG] = c
    end
    BUILD_CHG, BUILD_STATE = nil, nil
    return set.visible ~= nil, (set.on_enter or set.on_stay or set.on_leave) ~= nil,
        (set.on_add or set.on_remove or set.on_prop) ~= nil
end

function RT.drop()
    CUR = nil
end

-- The persistent state, for state.c: the running set's, to be saved when its space moves to
-- another node; and a restored one put in its place before the first build (which copies it
-- as it copies any state), so that the first set's on_reload(state) sees it.
function RT.state()
    return STATE
end

function RT.set_state(t)
    STATE = t
    api.state = t
end

-- The rule over pairs[start..n): verdict[i] = 1 / 0. SH.pos tells call.c where an error hit.
function RT.judge(pairs_p, n, verdict_p, start)
    local p, o, vis = cast(PAIRS, pairs_p), cast(U8, verdict_p), CUR.visible
    SH.fn = FN.visible
    for i = start, n - 1 do
        SH.pos = i
        local q = p[i]
        W.id, T.id = luaid(q.watcher), luaid(q.target)
        o[i] = vis(W, T) and 1 or 0
    end
end

-- The handlers over events[start..n).
-- A leave's reason as on_leave's third argument (spaces with reasons; else nil).
local WHY = {[1] = "removed", [2] = "never", [3] = "layer", [4] = "range", [5] = "rule",
             [6] = "cap"}

function RT.dispatch(ev_p, n, start)
    local ev, set = cast(EVS, ev_p), CUR
    local by_kind = {[0] = set.on_enter, [1] = set.on_leave, [2] = set.on_stay}
    local codes = {[0] = FN.on_enter, [1] = FN.on_leave, [2] = FN.on_stay}
    for i = start, n - 1 do
        local e = ev[i]
        local k = tonumber(e.kind)
        local f = by_kind[k]
        if f then
            SH.pos = i
            SH.fn = codes[k]
            W.id, T.id = luaid(e.watcher), luaid(e.target)
            f(W, T, WHY[tonumber(e.reason)])
        end
    end
end

-- The region handlers over events[start..n): on_region_enter(region, e) and
-- on_region_leave(region, e), the region as its id.
function RT.regions(ev_p, n, start)
    local ev, set = cast(REVS, ev_p), CUR
    local enter, leave = set.on_region_enter, set.on_region_leave
    if not enter and not leave then return end
    for i = start, n - 1 do
        local e = ev[i]
        local f = e.kind == 0 and enter or leave
        if f then
            SH.pos = i
            SH.fn = e.kind == 0 and FN.on_region_enter or FN.on_region_leave
            T.id = luaid(e.entity)
            f(luaid(e.region), T)
        end
    end
end

function RT.on_tick(tick)
    TICK = tick
    if CUR.on_tick then
        SH.fn = FN.on_tick
        CUR.on_tick(tick)
    end
end

function RT.set_tick(tick)
    TICK = tick
end

---------------------------------------------------------------------------------------------
-- Lifecycle hooks (on_add, on_remove, on_prop): the changes since the last tick, logged in
-- their order while the running set has the hook, and run at the start of the next tick
-- (RT.hooks). LIFE[i] = {1, id} an add ({0} once cancelled), {2, id, last view} a removal,
-- {3, id, key, old, new} a prop change. ADDING[id]: the add record of an entity whose
-- on_add has not run yet (its prop changes until then are not logged: on_add shows them).
local LIFE, NLIFE, ADDING = {}, 0, {}
local function life(rec)
    NLIFE = NLIFE + 1
    LIFE[NLIFE] = rec
end

-- (Nothing is logged while the set is faulted: its hooks would not run.)
local function prop_changed(id, key, old, new)
    if old ~= new and CUR and CUR.on_prop and SH.faulted == 0 and not ADDING[id] then
        life({3, id, key, old, new})
    end
end

-- A table that reads t and refuses writes (err).
local function read_only(t, err)
    return setmetatable({}, {__index = t, __newindex = err, __metatable = false})
end

-- The view of a removed entity: the fields and props it had, read-only.
local function ro_view() error("entity views are read-only", 2) end
local function dead_view(snap)
    return read_only(snap, ro_view)
end

-- From the game (props.c): sets one prop; the id is a number or a decimal string. Returns
-- nil, or the name of the limit it would pass ("props": props an entity, "bytes": their
-- bytes, "keys": distinct keys in the space), and then changes nothing.
function RT.set_prop(id, key, value, max_props, max_bytes, max_keys)
    check_prop(key, value, 1)
    id = luaid(u64(id))
    local c = COL[key]
    local old = c and c[id]
    if value ~= nil then
        if old == nil and (KEYN[id] or 0) >= max_props then return "props" end
        if c == nil and NKEYS >= max_keys then return "keys" end
        local bytes = (KEYB[id] or 0) + prop_bytes(key, value) - prop_bytes(key, old)
        if bytes > max_bytes then return "bytes" end
    end
    put_prop(id, key, value)
    prop_changed(id, key, old, value)
end

-- A copy of id's props (sightline.props, and sl_lua_props_each in props.c).
RT.props = props_copy

-- Every prop of every entity for the host's bulk walk (sl_lua_props_all): the columns
-- themselves, COL[key][id] = value, read by C and never changed there.
function RT.columns()
    return COL
end

local function forget(id)
    local ks = KEYS[id]
    if ks == nil then return end
    for k in pairs(ks) do put_prop(id, k, nil) end     -- (clears existing fields only)
end

-- From the host (sl_lua_removing), just before id leaves the space: its props go (an id
-- added again must not inherit them); its last view is kept for on_remove first. An entity
-- whose on_add has not run yet is not reported at all (as a pair that enters and leaves
-- between two ticks is not).
function RT.removing(id)
    local u = u64(id)
    id = luaid(u)
    local add, set = ADDING[id], CUR
    if add then
        add[1], ADDING[id] = 0, nil
    elseif set and set.on_remove and SH.faulted == 0 and API.get(SPACE, u, INFO) == 0 then
        life({2, id, {id = id, x = INFO.x, y = INFO.y, z = INFO.z, radius = INFO.radius,
                      layer = INFO.layer, mask = INFO.mask, hysteresis = INFO.hysteresis,
                      always = INFO.always, cap = INFO.cap, priority = INFO.priority,
                      group = INFO.group, owner = owner_of(u),
                      props = read_only(props_copy(id), ro_error)}})
    end
    forget(id)
end

-- From the host (sl_lua_added), when id joined the space and the running set has a
-- lifecycle hook: logged (for on_add; with any hook, so that its props until the hooks run
-- are not on_prop, and its removal before then cancels it).
function RT.added(id)
    id = luaid(u64(id))
    local set = CUR
    if set and (set.on_add or set.on_remove or set.on_prop) and SH.faulted == 0 then
        local rec = {1, id}
        life(rec)
        ADDING[id] = rec
    end
end

-- The lifecycle hooks over the changes logged since the last tick, in their order, from
-- (0-based) index start: C calls with start 0 first, and again after the one that raised.
-- on_add and on_prop get a live view; on_remove the last view, kept at the removal.
local RUN, NRUN = {}, 0
function RT.hooks(start)
    if start == 0 then
        RUN, NRUN, LIFE, NLIFE, ADDING = LIFE, NLIFE, {}, 0, {}
    end
    local set = CUR
    for i = start + 1, NRUN do
        SH.pos = i - 1
        local r = RUN[i]
        local k = r[1]
        if k == 1 and set.on_add then
            SH.fn = FN.on_add
            set.on_add(new_view(r[2]))
        elseif k == 2 and set.on_remove then
            SH.fn = FN.on_remove
            set.on_remove(dead_view(r[3]))
        elseif k == 3 and set.on_prop then
            SH.fn = FN.on_prop
            set.on_prop(new_view(r[2]), r[3], r[4], r[5])
        end
    end
    RUN, NRUN = {}, 0
end

-- Applies the changes scripts queued this tick; failures are logged, the rest applies.
function RT.apply()
    local n = NCHG
    NCHG = 0
    for i = 1, n do
        local c = CHG[i]
        CHG[i] = nil
        local op, id = c[1], c[2]
        local u = u64(id)
        local rc = 0
        if op == "prop" then
            if API.get(SPACE, u, INFO) == 0 then
                local col = COL[c[3]]
                local old = col and col[id]
                put_prop(id, c[3], c[4])
                prop_changed(id, c[3], old, c[4])
                rc = API.touch(SPACE, u)
            else
                rc = -1
            end
        elseif op == "radius" then
            rc = API.set_radius(SPACE, u, c[3])
        elseif op == "always" then
            rc = API.set_always(SPACE, u, c[3])
        elseif op == "relate" then
            rc = API.relate(SPACE, u, u64(c[3]), c[4])
        elseif op == "region" then
            local sp = c[3]
            local g = ffi.new("sl_region", {kind = sp[1], mask = sp[2]})
            local pts
            if sp[1] == 0 then
                g.x, g.y, g.r = sp[3], sp[4], sp[5]
            elseif sp[1] == 1 then
                g.x, g.y, g.x1, g.y1 = sp[3], sp[4], sp[5], sp[6]
            else
                pts = ffi.new("float[?]", #sp - 2)
                for i = 3, #sp do pts[i - 3] = sp[i] end
                g.xy, g.n = pts, (#sp - 2) / 2
            end
            rc = API.set_region(SPACE, u, g)
        elseif op == "unregion" then
            rc = API.remove_region(SPACE, u)
        elseif op == "cap" then
            rc = API.set_cap(SPACE, u, c[3], c[4])
        elseif op == "priority" then
            rc = API.set_priority(SPACE, u, c[3])
        elseif op == "group" then
            rc = API.set_group(SPACE, u, c[3])
        elseif op == "lod" then
            local b, n = c[3], #c[3]
            local ok = n <= 8
            local arr = ffi.new("sl_lod_band[?]", n > 0 and n or 1)
            for i = 1, ok and n or 0 do
                local k = b[i][2]
                ok = ok and k >= 0 and k < 4294967296 and k % 1 == 0
                arr[i - 1].distance, arr[i - 1].period = b[i][1], ok and k or 0
            end
            rc = ok and API.set_lod(SPACE, u, arr, n) or -1
        elseif op == "hysteresis" then
            rc = (c[3] < 0 or c[3] == c[3]) and API.set_hysteresis(SPACE, u, c[3]) or -1
        elseif op == "layer" then
            rc = c[3] >= 0 and c[3] <= 31 and c[3] % 1 == 0 and API.set_layer(SPACE, u, c[3]) or -1
        else
            rc = API.touch(SPACE, u)
        end
        if rc ~= 0 then
            log("script change " .. op .. " " .. tostring(id) .. " refused: " ..
                (rc == -1 and "no such entity or bad value" or ffi.string(API.error(SPACE))))
        end
    end
end

-- Protect the string metatable: sandboxed getmetatable("") must not reach the real one.
debug.getmetatable("").__metatable = false
return RT
