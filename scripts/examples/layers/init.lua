-- Ground, air and underground, as layers: 0 ground, 1 air, 2 underground.
-- Ground units see ground and air; air units see ground and air; underground units see
-- only each other, and nobody else sees them. Layers and masks could say the same in the
-- core; a rule makes it one table a designer can read and change on a running server.
local GROUND, AIR, UNDERGROUND = 0, 1, 2
local SEES = {
    [GROUND] = {[GROUND] = true, [AIR] = true},
    [AIR] = {[GROUND] = true, [AIR] = true},
    [UNDERGROUND] = {[UNDERGROUND] = true},
}

function visible(w, t)
    local row = SEES[w.layer]
    return row ~= nil and row[t.layer] == true
end

-- Ground units get told when something flies over them.
function on_enter(w, t)
    if w.layer == GROUND and t.layer == AIR then
        emit(w.id, "overhead", {id = t.id})
    end
end
