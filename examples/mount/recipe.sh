#!/usr/bin/env bash
# The shell recipe from the README: one server for a whole region, branches made and ended with mkdir,
# echo and rmdir. Usage: examples/mount/recipe.sh [WORKSPACE_DIR] (default: this repository's src/).
set -euo pipefail
source "$(dirname "$0")/setup.sh"

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
