#!/usr/bin/env python3
"""Eight agents, one mount, pure Python standard library.

Builds a region from a real tree (this repository's src/ unless a directory is given), mounts the whole
region with one server, forks eight branches by mkdir, runs a command in each with its working directory
at MNT/@agent-i, commits the first branch whose command passes, and discards the rest: every step is a
file operation, no bindings and no process per branch operation.

Usage: examples/mount/agent_fork.py [WORKSPACE_DIR]
"""
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The tool: this repository's ./daxfs (built on first use), or the assembly DAXFS_DLL names (the tests' build).
DAXFS = ["dotnet", os.environ["DAXFS_DLL"]] if os.environ.get("DAXFS_DLL") else [os.path.join(REPO, "daxfs")]
AGENTS = 8


def daxfs(*args):
    subprocess.run([*DAXFS, *args], check=True, stdout=subprocess.DEVNULL)


def control(branch_dir, command):
    """Writes one command to the branch's control file; an OSError carries the errno on failure."""
    fd = os.open(os.path.join(branch_dir, ".daxfs", "ctl"), os.O_WRONLY)
    try:
        os.write(fd, command.encode() + b"\n")
    finally:
        os.close(fd)


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "src")
    region = f"/dev/shm/agent-fork-{os.getpid()}.daxfs"
    mnt = tempfile.mkdtemp(prefix="agent-fork-")
    daxfs("mkfs", source, "-r", region, "--capacity", "512M")
    daxfs("mount", mnt, "-r", region, "--background")
    try:
        started = time.perf_counter()
        branches = []
        for i in range(AGENTS):
            path = os.path.join(mnt, f"@agent-{i}")
            os.mkdir(path)                                   # fork main
            branches.append(path)
        forked = time.perf_counter() - started

        # Each agent "solves" the task its own way; the check passes only for some of them.
        for i, path in enumerate(branches):
            with open(os.path.join(path, "ANSWER.txt"), "w") as f:
                f.write(f"{i * 7 % 5}\n")
        winner = None
        for path in branches:
            check = subprocess.run(["sh", "-c", "test \"$(cat ANSWER.txt)\" = 3 && ls >/dev/null"], cwd=path)
            if check.returncode == 0:
                winner = path
                break
        if winner is None:
            sys.exit("no agent passed")

        control(winner, f"commit {os.path.basename(winner)} passed")   # main's next version
        for path in branches:
            if path == winner:
                continue
            try:
                os.rmdir(path)                               # discard (a commit already invalidated them)
            except FileNotFoundError:
                pass
        with open(os.path.join(mnt, "ANSWER.txt")) as f:
            assert f.read() == "3\n", "main should hold the winner's answer"
        left = sorted(n for n in os.listdir(mnt) if n.startswith("@"))
        assert left == [], f"branches left: {left}"
        print(f"agent_fork: {AGENTS} branches forked in {forked * 1000:.1f} ms through the mount; "
              f"{os.path.basename(winner)} committed, the rest discarded")
    finally:
        subprocess.run([*DAXFS, "unmount", mnt], stdout=subprocess.DEVNULL)
        os.rmdir(mnt)
        os.remove(region)


if __name__ == "__main__":
    main()
