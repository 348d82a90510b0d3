-- The handler benchmark: empty enter and leave handlers, so what is timed is the path.
function on_enter(w, t) end
function on_leave(w, t) end
