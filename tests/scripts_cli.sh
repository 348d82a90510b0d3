#!/usr/bin/env bash
# The shipped scripts, end to end through sightline-replay --scripts: each example's events
# and custom events against its expected output under every index kind, the default set
# against the demo's hand-computed events, and a broken script reported with file:line.
set -euo pipefail
replay=$1 scripts=$2 traces=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for name in teams_stealth layers json_rules owners scopes lod party reasons crowd fog blast roster trap capture \
    flight; do
  stay=(); [ "$name" = lod ] && stay=(--stay)      # (its stays are what it shows)
  case $name in reasons|crowd|fog) stay=(--reasons) ;; esac
  for index in grid quadtree auto; do
    "$replay" "${stay[@]}" --index "$index" --scripts "$scripts/examples/$name" \
      "$traces/scripts/$name.trace" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "$name ($index)"; }
    diff -u "$traces/scripts/$name.expected" "$tmp/out" || fail "$name events differ ($index)"
    [ -s "$tmp/err" ] && { cat "$tmp/err" >&2; fail "$name logged errors"; }
  done
done

"$replay" --scripts "$scripts/default" "$traces/demo.trace" >"$tmp/out"
diff -u "$traces/demo.expected" "$tmp/out" || fail "the default scripts change the demo's events"

mkdir "$tmp/broken"
printf 'function visible(w, t)\n  return w.props.team ==\nend\n' >"$tmp/broken/init.lua"
set +e
"$replay" --scripts "$tmp/broken" "$traces/demo.trace" >/dev/null 2>"$tmp/err"
status=$?
set -e
[ "$status" = 2 ] || fail "a broken script exited $status, not 2"
grep -q 'init.lua:3:' "$tmp/err" || { cat "$tmp/err" >&2; fail "no file:line for a syntax error"; }
echo "scripts_cli: all checks passed"
