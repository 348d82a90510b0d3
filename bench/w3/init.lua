-- W3-rules (shared/WORKLOADS.md): a stealthy target is seen only by its own team.
-- The same rule as scripts/examples/teams_stealth, without its handlers.
function visible(w, t)
    local tp = t.props
    if tp.stealth then
        return w.props.team == tp.team
    end
    return true
end
