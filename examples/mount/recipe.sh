#!/usr/bin/env bash
# The shell recipe from the README: one server for a whole region, branches made and ended with mkdir,
# echo and rmdir. Usage: examples/mount/recipe.sh [WORKSPACE_DIR] (default: this repository's src/).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# The tool: this repository's ./daxfs (built on first use), or the assembly DAXFS_DLL names (the tests' build).
daxfs() { if [ -n "${DAXFS_DLL:-}" ]; then dotnet "$DAXFS_DLL" "$@"; else "$here/daxfs" "$@"; fi; }
src="${1:-$here/src}"
region="/dev/shm/recipe-$$.daxfs"
mnt="$(mktemp -d)"
trap 'daxfs unmount "$mnt" >/dev/null 2>&1 || true; rm -f "$region"; rmdir "$mnt"' EXIT

daxfs mkfs "$src" -r "$region" --capacity 512M >/dev/null
daxfs mount "$mnt" -r "$region" --background >/dev/null   # main at $mnt, each branch at $mnt/@NAME

mkdir "$mnt/@try"                                  # fork main
echo "tried" > "$mnt/@try/NOTES.md"                  # write in the branch
mkdir "$mnt/@try/.daxfs/branches/try-inner"        # fork @try (it is frozen while the child lives)
echo "inner" > "$mnt/@try-inner/inner.txt"
echo "commit-parent inner work" > "$mnt/@try-inner/.daxfs/ctl"   # fold it into @try
cat "$mnt/@try/.daxfs/ctl"                         # state and last failure of @try
echo "commit tried it" > "$mnt/@try/.daxfs/ctl"    # @try becomes main's next version
test -f "$mnt/inner.txt"
mkdir "$mnt/@scratch" && rmdir "$mnt/@scratch"     # fork and throw away
daxfs log -r "$region" | tail -n 3
echo "recipe: ok"
