#!/usr/bin/env bash
# The layers, checked (README "How Sightline is built"): a source file includes headers of
# its own layer and the layers below it only, and a double-underscore name (sl__*) never
# leaves the library that declares it. Run from ctest with the source root as $1.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"

# The sources: what git tracks plus new files it does not ignore (or every file, outside git).
files() {
    git ls-files --cached --others --exclude-standard -- "$@" 2>/dev/null ||
        find . -name '*.[ch]' | sed 's|^\./||'
}

# Each folder, and the layers (folders under core/, or lua, proto) it may include.
declare -A allowed=(
    [core/base]="base"
    [core/engine]="base engine"
    [lua]="base engine lua"
    [proto]="base proto"
    [core/net]="base proto net"
    [core/etcd]="base etcd"
    [core/server]="base engine lua proto net etcd server"
    [core/tools]="base engine lua proto server"
)

fail=0
for dir in "${!allowed[@]}"; do
    for f in $(files "$dir/*.c" "$dir/*.h"); do
        while IFS= read -r inc; do
            layer=${inc%%/*}
            [[ " ${allowed[$dir]} " == *" $layer "* ]] && continue
            echo "layers: $f includes \"$inc\": $dir may include only: ${allowed[$dir]}"
            fail=1
        done < <(sed -n 's/^#include "\([a-z]*\/[^"]*\)".*/\1/p' "$f")
        if grep -n '^#include ".*\.\./' "$f"; then
            echo "layers: $f includes by a relative path: name the layer's folder instead"
            fail=1
        fi
    done
done

# A library's own names: the sl__ names its headers declare. Another folder may not use
# them, except tests/core, which tests the engine's internals from inside.
declare -A home
for h in $(files '*.h'); do
    for name in $(grep -o 'sl__[a-z0-9_]*' "$h" | sort -u); do
        home[$name]=${home[$name]:-$(dirname "$h")}
    done
done
for f in $(files '*.c' '*.h'); do
    dir=$(dirname "$f")
    for name in $(grep -o 'sl__[a-z0-9_]*' "$f" | sort -u); do
        owner=${home[$name]:-$dir}
        [ "$owner" = "$dir" ] && continue
        [ "$dir" = tests/core ] && [ "$owner" = core/engine ] && continue
        echo "layers: $f uses $name, which belongs to $owner"
        fail=1
    done
done

if [ "$fail" = 0 ]; then
    echo "layers: every include goes down, no sl__ name leaves its library"
fi
exit "$fail"
