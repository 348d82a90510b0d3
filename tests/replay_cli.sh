#!/usr/bin/env bash
# End-to-end checks of sightline-replay: the demo's hand-computed events under every index
# and SIMD level, bad lines reported and skipped, and generated workloads checked against
# the brute-force oracle with --check.
set -euo pipefail
replay=$1 traces=$2 bench=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for index in grid quadtree auto; do
  for simd in scalar sse2 avx2 avx512; do
    if ! "$replay" --simd "$simd" --index "$index" "$traces/demo.trace" >"$tmp/out" 2>"$tmp/err"; then
      grep -q 'does not support' "$tmp/err" && continue
      cat "$tmp/err" >&2; fail "demo trace failed with $index/$simd"
    fi
    diff -u "$traces/demo.expected" "$tmp/out" || fail "demo events differ ($index/$simd)"
  done
done
# Hysteresis per entity, pair relations, always-relevant entities, queries, regions and a
# 3D space
# (hand-computed), under every index and SIMD level and the oracle.
for name in hysteresis relations always queries regions 3d; do
  for index in grid quadtree auto; do
    for simd in scalar sse2 avx2 avx512; do
      "$replay" --simd "$simd" --index "$index" "$traces/$name.trace" >"$tmp/out" 2>"$tmp/err" ||
        { grep -q 'does not support' "$tmp/err" && continue; cat "$tmp/err" >&2; fail "$name trace ($index/$simd)"; }
      diff -u "$traces/$name.expected" "$tmp/out" || fail "$name events differ ($index/$simd)"
    done
  done
  "$replay" --check "$traces/$name.trace" >/dev/null 2>"$tmp/err" || fail "oracle disagrees on $name"
done
# Leave reasons, nearest-N and vision groups (hand-computed, with reasons), under every
# index and the oracle.
for name in reasons caps groups; do
  for index in grid quadtree auto; do
    "$replay" --reasons --index "$index" "$traces/$name.trace" >"$tmp/out" || fail "$name ($index)"
    diff -u "$traces/$name.expected" "$tmp/out" || fail "$name differs ($index)"
  done
  "$replay" --reasons --check "$traces/$name.trace" >/dev/null 2>"$tmp/err" || fail "oracle disagrees on $name"
done
"$replay" --check "$traces/demo.trace" >/dev/null 2>"$tmp/err" || fail "oracle disagrees on the demo"
grep -q 'oracle agrees' "$tmp/err" || fail "--check printed no verdict"

# Bad lines: each reported with its number, skipped; good lines still count; exit status 1.
set +e
"$replay" "$traces/bad.trace" >"$tmp/out" 2>"$tmp/err"
status=$?
set -e
[ "$status" = 1 ] || fail "bad trace exited $status, not 1"
diff -u "$traces/bad.expected-stderr" "$tmp/err" || fail "bad-line messages differ"
printf '1 enter 1 6\n1 enter 6 1\n' | diff -u - "$tmp/out" || fail "good lines of the bad trace"

# Stay events and the oracle on them.
"$replay" --stay --check "$traces/demo.trace" >"$tmp/out" 2>"$tmp/err" || fail "--stay --check"
grep -qx '2 stay 1 2' "$tmp/out" && grep -qx '2 stay 3 2' "$tmp/out" || fail "no stay events for the pairs of the moved entity"
! grep -qx '2 stay 3 1' "$tmp/out" || fail "stay for a pair where nothing moved"

# Generated workloads (the bench's W1 / W2 generators), replayed against the oracle.
if [ -n "$bench" ] && [ -x "$bench" ]; then
  for wl in W1 W2; do
    "$bench" --workload "$wl" --entities 1500 --ticks 15 --seed 5 --emit-trace "$tmp/$wl.trace"
    for index in grid quadtree; do
      "$replay" --quiet --check --index "$index" "$tmp/$wl.trace" 2>"$tmp/err" \
        || { cat "$tmp/err" >&2; fail "oracle disagrees on $wl ($index)"; }
    done
  done
fi
echo "replay_cli: all checks passed"
