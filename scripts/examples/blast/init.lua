-- Queries: a grenade (prop `grenade`: its blast radius) goes off as soon as someone sees it
-- land; everything within the radius at that moment is hit, nearest first (the grenade
-- itself included: a query returns whoever is there). The watcher that saw it tells its
-- player: `blast` [grenade, {victims...}]. Each grenade goes off once.

local gone = {}

function on_enter(w, t)
    local r = t.props.grenade
    if r and not gone[t.id] then
        gone[t.id] = true
        emit(w.id, "blast", {t.id, sightline.query{x = t.x, y = t.y, r = r}})
    end
end
