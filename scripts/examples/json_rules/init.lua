-- Rules from a JSON file (lua-cjson): designers edit rules.json and reload, no Lua needed.
-- Entities carry a `faction` prop. A target whose faction is hidden from the watcher's is
-- not seen; seeing a hostile faction emits `hostile`.
local cjson = require "cjson"
local rules = require "rules"       -- rules.lua in this directory: the table helpers

local doc = cjson.decode(sightline.read_file("rules.json"))
local hidden = rules.pairs_of(doc.factions, "hidden_from")
local hostile = rules.pairs_of(doc.factions, "hostile")

function visible(w, t)
    local wf, tf = w.props.faction, t.props.faction
    return not (wf and tf and hidden[tf][wf])
end

function on_enter(w, t)
    local wf, tf = w.props.faction, t.props.faction
    if wf and tf and hostile[wf] and hostile[wf][tf] then
        emit(w.id, "hostile", {id = t.id})
    end
end

function selftest()
    assert(hidden.red.blue and not hidden.blue.red, "rules.json: red hides from blue")
    return true
end
