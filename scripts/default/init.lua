-- The default script set: plain distance and layers, no rule, no handlers.
-- Copy this directory to start your own; scripts/README.md explains every function.
return {}
