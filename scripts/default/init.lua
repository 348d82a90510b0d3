-- The default script set: plain distance, layers and masks; no rule, no handlers.
-- The server runs it when given no other directory. Copy this directory to start your own;
-- scripts/README.md describes every function a script may define and call.
return {}
