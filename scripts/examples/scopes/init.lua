-- Scopes: a unit with prop `scope` = N (a sniper) keeps what it sees in sight N units past
-- its view radius, so a target walking along the edge does not flicker in and out. The
-- script gives such a unit its own hysteresis (sightline.set_hysteresis) when it first sees
-- something; other units keep the space's. A target a sniper loses emits `lost`:
-- [unit, distance] (an array: a table with several keys comes out as JSON in no fixed order).

function on_enter(w, t)
    local scope = w.props.scope
    if type(scope) == "number" and scope >= 0 and w.hysteresis ~= scope then
        sightline.set_hysteresis(w.id, scope)
    end
end

function on_leave(w, t)
    if w.props.scope ~= nil then
        local dx, dy = t.x - w.x, t.y - w.y
        emit(w.id, "lost", {t.id, math.floor(math.sqrt(dx * dx + dy * dy))})
    end
end
