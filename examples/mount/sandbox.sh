#!/usr/bin/env bash
# The sandbox recipe: a process in fresh mount and PID namespaces sees only its branch, bind-mounted as
# /workspace, and still forks a child of it, folds the child back, and commits, through /workspace/.daxfs
# alone. Needs root (unshare and mount). Usage: examples/mount/sandbox.sh [WORKSPACE_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# The tool: this repository's ./daxfs (built on first use), or the assembly DAXFS_DLL names (the tests' build).
daxfs() { if [ -n "${DAXFS_DLL:-}" ]; then dotnet "$DAXFS_DLL" "$@"; else "$here/daxfs" "$@"; fi; }
src="${1:-$here/src}"
region="/dev/shm/sandbox-$$.daxfs"
mnt="$(mktemp -d)"
trap 'daxfs unmount "$mnt" >/dev/null 2>&1 || true; rm -f "$region"; rmdir "$mnt"' EXIT

daxfs mkfs "$src" -r "$region" --capacity 512M >/dev/null
daxfs mount "$mnt" -r "$region" --background >/dev/null
mkdir "$mnt/@agent"

# Inside: only /workspace (the branch) is reachable; the region and the mount's root are not.
unshare --mount --pid --fork --mount-proc bash -euo pipefail -c '
  mkdir -p /workspace-root && mount --bind "$1" /workspace-root
  umount -l "$2"                                   # the rest of the mount is gone from this namespace
  cd /workspace-root
  echo "edited in the sandbox" > sandbox.txt
  mkdir .daxfs/branches/agent-try                  # checkpoint: a child of this branch
  echo "risky change" > .daxfs/branches/agent-try/risky.txt
  echo "commit-parent keep the risky change" > .daxfs/branches/agent-try/.daxfs/ctl
  test -f risky.txt                                # folded back into this branch
  echo "commit sandbox work" > .daxfs/ctl          # this branch becomes main'"'"'s next version
  ls . >/dev/null 2>&1 && { echo "the committed branch should be stale"; exit 1; } || true
' sandbox "$mnt/@agent" "$mnt"

test "$(cat "$mnt/sandbox.txt")" = "edited in the sandbox"
test -f "$mnt/risky.txt"
echo "sandbox: ok"
