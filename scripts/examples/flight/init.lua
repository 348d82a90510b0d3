-- 3D spaces: flying units. In a space with a depth, entities have a height (`e.z`) and a
-- watcher sees by sphere: a flyer straight above a tower but higher than its radius is not
-- seen. A tower (prop `aa`: the reach of its guns) that spots a flyer (layer 1) tells its
-- player `spotted` [flyer, its height, {flyers within the guns' sphere}]: a 3D query, a
-- sphere around the tower (`z` given), of layer 1 only (`layers = 2`), nearest first.

function on_enter(w, t)
    local guns = w.props.aa
    if guns and t.layer == 1 then
        local hits = sightline.query{x = w.x, y = w.y, z = w.z, r = guns, layers = 2}
        emit(w.id, "spotted", {t.id, t.z, hits})
    end
end
