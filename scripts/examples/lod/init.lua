-- Update rates by distance (level of detail): a unit gets the stays (the "still in sight,
-- here is its news" events) of what is near it every tick, of what is farther every 2nd
-- tick, and of what is far every 4th, while enters and leaves always come at once. Units
-- with prop `hero` get everything every tick. Each unit's bands are set when it first sees
-- something (a queued change, so from the next tick on); spaces need stays on.

local BANDS = {{30, 1}, {80, 2}, {1e9, 4}}

function on_enter(w, t)
    if w.props.hero then
        sightline.set_lod(w.id, nil)
    else
        sightline.set_lod(w.id, BANDS)
    end
end
