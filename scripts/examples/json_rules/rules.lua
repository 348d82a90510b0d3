-- Helpers for init.lua: turns {faction = {key = {names...}}} into set[faction][name] = true.
local M = {}

function M.pairs_of(factions, key)
    local set = {}
    for name, f in pairs(factions) do
        set[name] = {}
        for _, other in ipairs(f[key] or {}) do
            set[name][other] = true
        end
    end
    return set
end

return M
