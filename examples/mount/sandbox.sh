#!/usr/bin/env bash
# The sandbox recipe: a process in fresh mount and PID namespaces sees only its branch, bind-mounted as
# /mnt/workspace, and still forks a child of it, folds the child back, and commits, through its .daxfs
# alone. Needs root (unshare and mount). Usage: examples/mount/sandbox.sh [WORKSPACE_DIR]
set -euo pipefail
source "$(dirname "$0")/setup.sh"
mkdir "$mnt/@agent"

# Inside: only /workspace (the branch) is reachable; the region and the mount's root are not.
unshare --mount --pid --fork --mount-proc bash -euo pipefail -c '
  mount -t tmpfs sandbox /mnt && mkdir /mnt/workspace      # a private /mnt, only in this namespace
  mount --bind "$1" /mnt/workspace                          # the branch, as the sandbox'"'"'s workspace
  umount -l "$2"                                            # the rest of the mount is gone from here
  cd /mnt/workspace
  echo "edited in the sandbox" > sandbox.txt
  mkdir .daxfs/branches/agent-try                           # checkpoint: a child of this branch
  echo "risky change" > .daxfs/branches/agent-try/risky.txt
  echo "commit-parent keep the risky change" > .daxfs/branches/agent-try/.daxfs/ctl
  test -f risky.txt                                         # folded back into this branch
  echo "commit sandbox work" > .daxfs/ctl                   # this branch becomes main'"'"'s next version
  sleep 0.2
  ls . >/dev/null 2>&1 && { echo "the committed branch should be stale"; exit 1; } || true
' sandbox "$mnt/@agent" "$mnt"

test "$(cat "$mnt/sandbox.txt")" = "edited in the sandbox"
test -f "$mnt/risky.txt"
echo "sandbox: ok"
