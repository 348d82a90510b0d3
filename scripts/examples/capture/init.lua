-- Regions: a capture zone. The zone (region 1, a circle) is set when the scripts load. Who
-- stands in it is kept from on_region_enter / on_region_leave, per team (prop `team`). At
-- every tick when exactly one team holds the zone, that team's capture goes one step
-- further; at 3 steps the zone is theirs and every member inside is told `captured`
-- [team]. A contested zone (two teams in it) makes no progress.

local ZONE = 1
sightline.set_region(ZONE, {kind = "circle", x = 200, y = 200, r = 25})

local inside = {}       -- team -> {[id] = true}
local count = {}        -- team -> entities of it in the zone
local progress = {}     -- team -> steps
local holder = nil

function on_region_enter(region, e)
    local team = e.props.team
    if region ~= ZONE or team == nil then return end
    inside[team] = inside[team] or {}
    inside[team][e.id] = team
    count[team] = (count[team] or 0) + 1
end

function on_region_leave(region, e)
    -- (a removed entity's view has no props left: look the team up by id)
    for team, ids in pairs(inside) do
        if region == ZONE and ids[e.id] then
            ids[e.id] = nil
            count[team] = count[team] - 1
        end
    end
end

function on_tick(n)
    local only = nil
    for team, c in pairs(count) do
        if c > 0 then
            if only then return end     -- contested
            only = team
        end
    end
    if only == nil or only == holder then return end
    progress[only] = (progress[only] or 0) + 1
    if progress[only] < 3 then return end
    holder = only
    local ids = {}
    for id in pairs(inside[only]) do ids[#ids + 1] = id end
    table.sort(ids)
    for _, id in ipairs(ids) do emit(id, "captured", {only}) end
end
