-- Shared vision (fog of war): every unit with a prop `team` is in that team's vision group,
-- so the team sees whatever any of its units sees. The game's clients subscribe to their
-- team's group (`subscribe`, PROTOCOL.md) and get the group's enters and leaves: the map a
-- player may draw. Units are found as they meet anything (on_enter); on_tick puts them in
-- their team's group, again when their team changes (a game may as well set groups from
-- the client: `group`).

local units = {}        -- unit id -> the team whose group it is in (false: none yet)

function on_enter(w, t)
    if units[w.id] == nil then units[w.id] = false end
    if units[t.id] == nil then units[t.id] = false end
end

function on_tick(n)
    for id, in_team in pairs(units) do
        local u = sightline.get(id)
        if u == nil then
            units[id] = nil                     -- removed
        elseif (u.props.team or false) ~= in_team then
            sightline.set_group(id, u.props.team or 0)
            units[id] = u.props.team or false
        end
    end
end
