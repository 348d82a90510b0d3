-- Teams and stealth (the W3-rules workload): entities carry props `team` (a number) and
-- `stealth` (a boolean). A stealthy target is seen only by its own team; everything else is
-- seen as distance and layers allow. Spotting an enemy emits a `spotted` event.

function visible(w, t)
    local tp = t.props
    if tp.stealth then
        return w.props.team == tp.team
    end
    return true
end

function on_enter(w, t)
    local wt, tt = w.props.team, t.props.team
    if wt ~= nil and tt ~= nil and wt ~= tt then
        emit(w.id, "spotted", {enemy = t.id})
    end
end

-- A quick check that runs before this set replaces the running one.
function selftest()
    local me = {props = {team = 1}}
    assert(visible(me, {props = {team = 1, stealth = true}}) == true, "team-mates see stealth")
    assert(visible(me, {props = {team = 2, stealth = true}}) == false, "enemies do not")
    assert(visible(me, {props = {team = 2}}) == true, "non-stealthy enemies are seen")
    return true
end
