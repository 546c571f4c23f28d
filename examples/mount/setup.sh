# Sourced by the mount recipes: builds a region from a tree and mounts it whole (one server) at $mnt, and
# removes both when the script exits. Sets: here (the repository), src, region, mnt, and daxfs (the tool:
# this repository's ./daxfs, built on first use, or the assembly DAXFS_DLL names, as the tests do).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
daxfs() { if [ -n "${DAXFS_DLL:-}" ]; then dotnet "$DAXFS_DLL" "$@"; else "$here/daxfs" "$@"; fi; }
src="${1:-$here/src}"
region="/dev/shm/$(basename "$0" .sh)-$$.daxfs"
mnt="$(mktemp -d)"
trap 'daxfs unmount "$mnt" >/dev/null 2>&1 || true; rm -f "$region"; rmdir "$mnt"' EXIT
daxfs mkfs "$src" -r "$region" --capacity 512M >/dev/null
daxfs mount "$mnt" -r "$region" --background >/dev/null   # main at $mnt, each branch at $mnt/@NAME
