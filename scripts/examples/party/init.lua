-- Party: members of one party (prop `party`, a number) keep each other in sight across the
-- whole map once they have met, as on a minimap, by forcing the pair both ways
-- (sightline.relate). Leaving the party (the prop cleared or changed) ends it: the game
-- calls relate(w, t, nil), or here the first member to notice does, on its next enter.
-- A unit with prop `boss` becomes always relevant the first time anyone sees it: from then
-- on every unit sees it, wherever it is (sightline.set_always).
-- A unit with prop `gm` is hidden from whoever meets it, from the tick after the meeting
-- (relations are for pairs you know of; to hide something from the first moment, write a
-- `visible` rule).

function on_enter(w, t)
    local p = w.props.party
    if t.props.boss and not t.always then
        sightline.set_always(t.id, true)
    end
    if t.props.gm then
        sightline.relate(w.id, t.id, "never")
    elseif p ~= nil and p == t.props.party then
        sightline.relate(w.id, t.id, "force")
        sightline.relate(t.id, w.id, "force")
        emit(w.id, "party", {t.id})
    end
end
