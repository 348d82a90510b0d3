-- Regions from scripts: traps. An entity added with prop `trap` (its size) lays a square trap
-- around where it stands: a region with the trap's own id (regions have their own ids, so
-- region 9 is entity 9's trap). The first other entity to walk onto it springs it: the
-- victim is told `snared` and loses its sight (radius 0), the trap's layer is told
-- `sprung` [victim], and the trap goes. A trap that is removed takes its region with it.

function on_add(e)
    local size = e.props.trap
    if size then
        sightline.set_region(e.id, {kind = "rect", x = e.x - size, y = e.y - size,
                                    x1 = e.x + size, y1 = e.y + size})
    end
end

function on_remove(e)
    if e.props.trap then sightline.remove_region(e.id) end
end

function on_region_enter(trap, e)
    if e.id == trap then return end         -- (the trap stands on itself)
    emit(e.id, "snared", {trap})
    emit(trap, "sprung", {e.id})
    sightline.set_radius(e.id, 0)
    sightline.remove_region(trap)
end
