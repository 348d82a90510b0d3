-- Owners: every client session owns the entities it added, and `sightline.owner(id)` (or a
-- view's `owner`) tells scripts whose an entity is, as an opaque number (nil: nobody's, such
-- as the static entities of the map). Here a player's cloaked units (prop `cloaked`) are
-- seen only by that player's own units, with no `team` prop to keep in step: the owner is
-- known from who added the entity. Seeing a unit of another player emits `contact`.

function visible(w, t)
    if t.props.cloaked then
        return w.owner ~= nil and w.owner == t.owner
    end
    return true
end

function on_enter(w, t)
    local mine, theirs = w.owner, sightline.owner(t.id)
    if mine ~= nil and theirs ~= nil and mine ~= theirs then
        emit(w.id, "contact", {unit = t.id})
    end
end

-- Checked before this set replaces the running one (views here are plain tables).
function selftest()
    local a, b = {owner = 1, props = {}}, {owner = 2, props = {}}
    assert(visible(a, {owner = 1, props = {cloaked = true}}) == true, "own cloaked units")
    assert(visible(a, {owner = 2, props = {cloaked = true}}) == false, "others' cloaked")
    assert(visible({props = {}}, {props = {cloaked = true}}) == false, "nobody's sees none")
    assert(visible(b, {owner = 1, props = {}}) == true, "uncloaked units are seen")
    return true
end
