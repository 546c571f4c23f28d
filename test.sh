#!/usr/bin/env bash
# The test command: installs what the tests need (as root on Debian or Ubuntu), builds the whole solution
# (warnings are errors) and runs every test project. Without what the mount tests need (FUSE, root), it says so
# in one line and runs the others.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# What the tests use besides .NET: fuse3 (mounts), git and gcc (programs run inside a mount), python3 (the
# conformance suite), node and npm (the reference TypeScript MCP client, installed from npm by its test).
missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v git >/dev/null || missing+=(git)
command -v cc >/dev/null || missing+=(gcc)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]} (install them, or run as root on Debian or Ubuntu to have them installed)"
  fi
fi

dotnet build Daxfs.Branching.sln -c Release

# The remote tests need an S3 endpoint: the one in DAXFS_S3_ENDPOINT (with AWS credentials in the environment), or
# a one-node Ceph cluster this script starts for the run (as root on Debian: .ci/ceph-s3) and stops after.
s3=yes
if [ -z "${DAXFS_S3_ENDPOINT:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DAXFS_CEPH_DIR=$(mktemp -d /tmp/daxfs-ceph.XXXXXX)
    export DAXFS_CEPH_DIR
    trap '.ci/ceph-s3 stop "$DAXFS_CEPH_DIR" >/dev/null 2>&1 || true' EXIT
    eval "$(.ci/ceph-s3 start "$DAXFS_CEPH_DIR")"
  else
    s3="no: set DAXFS_S3_ENDPOINT and AWS credentials, or run as root on Debian (a local Ceph S3 gateway is started)"
  fi
fi
filter=()
if [ "$s3" = yes ] && [ -z "${DAXFS_CEPH_DIR:-}" ]; then
  echo "test.sh: the remote tests use $DAXFS_S3_ENDPOINT; the one that kills the gateway mid-push needs the local Ceph cluster, and is skipped"
  filter=(--filter "FullyQualifiedName!~A_gateway_killed")
elif [ "$s3" != yes ]; then
  echo "test.sh: skipping the remote tests, $s3"
  filter=(--filter "FullyQualifiedName!~Daxfs.Branching.Remote.Tests")
fi

mounts=yes
if [ "$(id -u)" != 0 ]; then
  mounts="no: they mount as root (run ./test.sh as root)"
elif [ ! -c /dev/fuse ]; then
  mounts="no: /dev/fuse is missing (modprobe fuse)"
elif ! command -v fusermount3 >/dev/null || ! command -v git >/dev/null || ! command -v cc >/dev/null || ! command -v python3 >/dev/null; then
  mounts="no: fuse3, git, gcc and python3 are needed (apt-get install fuse3 git gcc python3)"
fi
if [ "$mounts" = yes ]; then
  # The mount tests run once per transport: /dev/fuse reads and writes, then FUSE over io_uring where this kernel
  # has it (its fuse module parameter is switched on for the run and back after).
  DAXFS_URING=off dotnet test Daxfs.Branching.sln -c Release --no-build "${filter[@]}"
  uring=/sys/module/fuse/parameters/enable_uring
  if [ -w "$uring" ] && [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]; then
    was=$(cat "$uring")
    echo Y > "$uring"
    status=0
    DAXFS_URING=on dotnet test tests/Daxfs.Branching.Fuse.Tests -c Release --no-build || status=$?
    echo "$was" > "$uring"
    [ "$status" = 0 ] || exit "$status"
  else
    echo "test.sh: skipping the io_uring run of the mount tests: this kernel has no FUSE over io_uring to switch on ($uring)"
  fi
else
  echo "test.sh: skipping the mount tests, $mounts"
  projects=(tests/Daxfs.Branching.Tests tests/Daxfs.Branching.Cli.Tests examples/TestRollback)
  [ "$s3" = yes ] && projects+=(tests/Daxfs.Branching.Remote.Tests)
  for project in "${projects[@]}"; do
    dotnet test "$project" -c Release --no-build "${filter[@]}"
  done
fi
