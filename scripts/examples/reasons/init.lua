-- Leave reasons: in a space created with `reasons`, on_leave gets why a pair ended as its
-- third argument. Here a unit that loses sight of something tells its player why, so the
-- client can show "out of range", "hidden" or "gone" (`lost`: [unit, why]). Units with prop
-- `hidden` are seen by nobody (the rule), which shows as "rule".

function visible(w, t)
    return not t.props.hidden
end

function on_leave(w, t, why)
    emit(w.id, "lost", {t.id, why or "unknown"})
end
