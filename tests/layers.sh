#!/usr/bin/env bash
# The layers, checked (README "How Sightline is built"): a source file includes headers of
# its own layer and the layers below it only, and a double-underscore name (sl__*) never
# leaves the library that defines it. Run from ctest with the source root as $1.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"

# Each folder, and the layers (folders under core/, or lua, proto) it may include.
declare -A allowed=(
    [core/base]="base"
    [core/engine]="base engine"
    [lua]="base engine lua"
    [proto]="base proto"
    [core/net]="base proto net"
    [core/etcd]="base etcd"
    [core/server]="base engine lua proto net etcd server"
    [core/tools]="base engine lua proto"
)
# The sl__ names each folder may use: the engine its own (tests/core tests the engine's
# internals from inside, as a white-box test), the script host its embedded runtime and
# the sl__lua_* names its files share (lua/host_impl.h).
declare -A own_private=(
    [core/engine]='sl__[a-z0-9_]*' [tests/core]='sl__[a-z0-9_]*'
    [lua]='sl__\(runtime_lua\|lua_[a-z0-9_]*\)'
)

fail=0
for dir in "${!allowed[@]}"; do
    for f in $(git ls-files "$dir/*.c" "$dir/*.h" 2>/dev/null || find "$dir" -name '*.[ch]'); do
        while IFS= read -r inc; do
            layer=${inc%%/*}
            [[ " ${allowed[$dir]} " == *" $layer "* ]] && continue
            echo "layers: $f includes \"$inc\": $dir may include only: ${allowed[$dir]}"
            fail=1
        done < <(sed -n 's/^#include "\([a-z]*\/[^"]*\)".*/\1/p' "$f")
    done
done

for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]'); do
    mine=${own_private[$(dirname "$f")]:-NONE}
    bad=$(grep -no 'sl__[a-z0-9_]*' "$f" | grep -vx "[0-9]*:$mine" || true)
    if [ -n "$bad" ]; then
        echo "$bad" | sed "s|^|layers: $f:|; s|$|: a library's own sl__ name used outside it|"
        fail=1
    fi
done

if [ "$fail" = 0 ]; then
    echo "layers: every include goes down, no sl__ name leaves its library"
fi
exit "$fail"
