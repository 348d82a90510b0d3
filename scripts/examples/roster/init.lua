-- Lifecycle hooks: team head counts kept without polling. on_add counts a new entity in its
-- team (the `team` prop it was added with), on_prop moves it when its team changes, and
-- on_remove takes it out (the removed entity's last props are still readable there). Each
-- entity that joins a team is told the new count, `roster` [team, count]; when one leaves
-- the game, those left in its team are told, `left` [id, team].
--
-- The rule: a team of one (a straggler) is seen by no one. It reads the counts, which no
-- move or prop of the straggler itself changes, so every member of a team whose count
-- changed is touched: its pairs are judged again in this very tick (what hooks ask for
-- applies before the tick judges pairs).

local members = {}      -- team -> {[id] = true}
local count = {}        -- team -> number of members

local function changed(team)
    for id in pairs(members[team]) do sightline.touch(id) end
end

local function join(id, team)
    if team == nil then return end
    members[team] = members[team] or {}
    members[team][id] = true
    count[team] = (count[team] or 0) + 1
    changed(team)
    emit(id, "roster", {team, count[team]})
end

local function quit(id, team)
    if team == nil then return end
    members[team][id] = nil
    count[team] = count[team] - 1
    changed(team)
end

function on_add(e)
    join(e.id, e.props.team)
end

function on_prop(e, key, old, new)
    if key == "team" then
        quit(e.id, old)
        join(e.id, new)
    end
end

function on_remove(e)
    local team = e.props.team
    quit(e.id, team)
    if team == nil then return end
    local left = {}
    for id in pairs(members[team]) do left[#left + 1] = id end
    table.sort(left)        -- (pairs has no order: the events' order must not vary)
    for _, id in ipairs(left) do emit(id, "left", {e.id, team}) end
end

function visible(w, t)
    local team = t.props.team
    return team == nil or count[team] > 1
end
