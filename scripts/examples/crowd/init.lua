-- Nearest-N in a crowd: in a packed town square a player's client cannot take everyone, so
-- each player (prop `player`) sees its CAP most relevant others: a flag carrier (prop
-- `carrier`) before anyone, then the nearest. A target it sees gives way only to one nearer
-- by more than MARGIN, so two players at about the same distance do not flicker in and out.
-- The flag (prop `flag`) is always relevant: seen by everyone, and not counted in the cap.
-- A player told that the cap cut someone gets `crowded` ([target]).

local CAP, MARGIN = 3, 2

function on_enter(w, t)
    if w.props.player and w.cap == 0 then sightline.set_cap(w.id, CAP, MARGIN) end
    if t.props.carrier and t.priority == 0 then sightline.set_priority(t.id, 10) end
    if t.props.flag and not t.always then sightline.set_always(t.id, true) end
end

function on_leave(w, t, why)
    if why == "cap" then emit(w.id, "crowded", {t.id}) end
end
