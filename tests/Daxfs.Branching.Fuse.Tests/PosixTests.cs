namespace Daxfs.Branching.Fuse.Tests;

/// <summary>POSIX rules a mounted branch follows as tmpfs does: each check runs on the mount and on tmpfs, and both must agree.</summary>
public class PosixTests
{
    /// <summary>Runs <paramref name="script"/> in a branch of a fresh mount and in a tmpfs directory; returns both outputs (stdout and stderr, paths made relative).</summary>
    private static (string Mount, string Tmpfs) Both(string script)
    {
        using var m = new Mounted();
        string mp = m.Mount("posix");
        string tmp = Directory.CreateTempSubdirectory("daxfs-posix-").FullName; // /tmp on this machine; the shm check below uses /dev/shm
        string shm = Path.Combine("/dev/shm", Path.GetFileName(tmp));
        Directory.CreateDirectory(shm);
        try
        {
            string Run(string dir)
            {
                Directory.CreateDirectory(Path.Combine(dir, "w")); // an empty directory in both
                var r = Sh.Bash(script, Path.Combine(dir, "w"));
                return (r.Out + r.Err).Replace(dir, "DIR", StringComparison.Ordinal);
            }
            return (Run(mp), Run(shm));
        }
        finally
        {
            Directory.Delete(tmp, true);
            Directory.Delete(shm, true);
        }
    }

    private static void Same(string script, params string[] expected)
    {
        var (mount, tmpfs) = Both(script);
        Assert.True(tmpfs == mount, $"the mount answered\n{mount}\ntmpfs answered\n{tmpfs}");
        foreach (var e in expected)
            Assert.Contains(e, mount);
    }

    [Fact]
    public void A_file_removed_or_replaced_while_open_keeps_working_through_its_descriptor()
    {
        Same("""
            echo hello > g; exec 3<g; rm g; cat <&3; stat -L -c 'links %h size %s' /proc/self/fd/3
            echo old > a; exec 4<>a; echo new > b; mv b a; cat <&4; echo more >&4; stat -L -c 'links %h size %s' /proc/self/fd/4
            cat a; exec 4>&-; exec 3>&-; ls
            python3 -c "import os,tempfile; f=tempfile.TemporaryFile(dir='.'); f.write(b'x'*100000); f.seek(0); print(len(f.read()), os.fstat(f.fileno()).st_nlink)"
            ls
            """, "hello\nlinks 0 size 6", "old\nlinks 0 size 9", "100000 0");
    }

    [Fact]
    public void Names_over_255_bytes_are_ENAMETOOLONG_for_every_call_that_looks_one_up()
    {
        string n = new('n', 256);
        Same($"stat {n}; chmod 600 {n}; rm {n}; touch {n}; mkdir {n}; ls {n}/x; true", "File name too long");
    }

    [Fact]
    public void Rename_exchange_swaps_and_noreplace_refuses()
    {
        Same("""
            mkdir d; echo f > f; echo inner > d/x
            python3 - <<'PY'
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            def r2(a, b, flags):
                rc = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
                print(a, b, flags, "ok" if rc == 0 else os.strerror(ctypes.get_errno()))
            r2("f", "d", 2); r2("f", "missing", 2); r2("d", "f", 1); r2("f", "d", 3); r2("d", "d/x", 2)
            PY
            cat d; cat f/x; ls
            """, "f d 2 ok", "inner");
    }

    [Fact]
    public void Fallocate_grows_punches_and_zeroes_as_tmpfs_does()
    {
        Same("""
            fallocate -l 100000 grown; stat -c '%s' grown
            head -c 50000 /dev/urandom > hole; fallocate -p -o 1000 -l 2000 hole; stat -c '%s' hole; cmp -n 2000 -i 1000:0 hole /dev/zero && echo punched-zeros
            fallocate -z -o 40000 -l 20000 hole; stat -c '%s' hole
            fallocate -n -l 5000000 hole; stat -c '%s' hole
            """, "100000\n", "punched-zeros", "Operation not supported");
    }

    [Fact]
    public void Access_times_are_stored_to_the_nanosecond_and_now_and_omit_work()
    {
        Same("""
            echo x > f; touch -m -d @5.25 f; touch -a -d @7.123456789 f; stat -c '%X %Y %x' f
            touch -a f; stat -c '%Y' f; test "$(stat -c %X f)" -gt 1000000000 && echo atime-now
            touch -m -d @9 f; test "$(stat -c %X f)" -gt 1000000000 && echo atime-kept
            mkdir d; touch -a -d @11 d; stat -c '%X' d; ln -s f l; touch -h -a -d @13 l; stat -c '%X' l
            """, "7 5 1970-01-01 00:00:07.123456789 +0000", "5\natime-now", "atime-kept", "11\n13");
    }

    [Fact]
    public void FIFOs_sockets_and_device_nodes_are_made_listed_and_work_through_the_kernel()
    {
        Same("""
            mkfifo -m 640 pipe; mknod chr c 1 3; mknod blk b 7 200; mknod big c 300 70000
            python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('sock')"
            stat -c '%n %F %t:%T %a' pipe chr blk big sock; ls -l | cut -c1-10
            find . -type p -o -type s -o -type c -o -type b | sort
            (echo through-the-fifo > pipe &) ; cat pipe
            python3 - <<'PY'
            import os, socket, threading
            os.remove('sock')
            srv = socket.socket(socket.AF_UNIX); srv.bind('sock'); srv.listen(1)
            def serve():
                c, _ = srv.accept(); c.sendall(c.recv(100).upper()); c.close()
            t = threading.Thread(target=serve); t.start()
            cl = socket.socket(socket.AF_UNIX); cl.connect('sock'); cl.sendall(b'over the socket'); print(cl.recv(100).decode()); t.join()
            PY
            """, "pipe fifo 0:0 640", "chr character special file 1:3", "blk block special file 7:c8", "big character special file 12c:11170",
            "through-the-fifo", "OVER THE SOCKET");
    }

    [Fact]
    public void Device_nodes_in_a_mount_are_inert_nodev()
    {
        using var m = new Mounted();
        string mp = m.Mount("dev");
        var r = Sh.Bash($"mknod {mp}/null c 1 3 && echo x > {mp}/null");
        Assert.Contains("Permission denied", r.Err); // the mount is nodev: the node exists, the device is not reachable
        Assert.Contains("nodev", Sh.Ok(Sh.Bash($"findmnt -n -o OPTIONS {mp}"), "findmnt").Out);
        Assert.Contains("nosuid", Sh.Ok(Sh.Bash($"findmnt -n -o OPTIONS {mp}"), "findmnt").Out);
    }

    [Fact]
    public void Hard_links_share_an_inode_and_follow_POSIX_through_unlink_and_rename()
    {
        Same("""
            echo one > f; ln f g; stat -c '%h' f g; test "$(stat -c %i f)" = "$(stat -c %i g)" && echo same-inode
            echo two >> g; cat f; mkdir d; ln g d/h; stat -c '%h' f
            rm f; cat g; stat -c '%h' g d/h
            mv g d/h || true; ls; ls d; stat -c '%h' d/h
            ln d d2 || true; ln missing x || true; ln d/h d/h || true
            exec 3<d/h; rm d/h; cat <&3; exec 3<&-
            ls d
            """, "2\n2\nsame-inode", "one\ntwo\n3", "hard link not allowed for directory", "File exists");
    }

    [Fact]
    public void Git_clone_local_hard_links_its_objects()
    {
        Same("""
            git init -q src && cd src && for i in 1 2 3; do echo $i > f$i; git add f$i; git -c user.email=t@t -c user.name=t commit -qm c$i; done
            git gc -q 2>/dev/null; cd ..
            git clone -q --local src copy
            find src/.git/objects -type f | head -1 | xargs stat -c '%h'
            cd copy && git log --oneline | wc -l && git fsck --no-progress 2>&1 | grep -c error || true
            """, "2\n3\n0");
    }

    [Fact]
    public void Cp_a_and_tar_carry_every_file_kind_in_and_out_unchanged()
    {
        // A tree with every kind, hard links, modes, owners and nanosecond times, copied into the directory
        // (the mount, or tmpfs) with cp -a, back out with tar, and compared with stat.
        Same("""
            t=$(mktemp -d /dev/shm/kinds-XXXXXX); cd $t
            mkdir -p d/e; echo data > d/f; ln d/f d/e/g; ln -s ../f d/e/l; mkfifo -m 620 d/p; mknod d/c c 1 3
            python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('d/s')"
            chown 1000:1000 d/f; chmod 2750 d/e; touch -h -d @1500.125 d/e/l d/p d/c d/s; touch -d @1600.5 d/f; touch -d @1700.75 d/e
            cd - >/dev/null
            cp -a $t/d copy; tar -C copy -cf - . | (mkdir back && tar -C back -xpf -)
            for w in copy back; do (cd $w && find . -mindepth 1 | sort | xargs stat -c "$w %n %F %a %u:%g %h %t:%T %y"); done
            diff -r --no-dereference copy back 2>&1 | grep -v "is a fifo while\|is a character special file while" || true; rm -rf $t
            """, "copy ./f regular file 644 1000:1000 2 0:0 1970-01-01 00:26:40.500000000", "copy ./c character special file 644 0:0 1 1:3",
            "copy ./e directory 2750 0:0 2 0:0 1970-01-01 00:28:20.750000000", "back ./p fifo 620", "Only in copy: s");
    }

    [Fact]
    public void Extended_attributes_and_POSIX_ACLs_are_stored_and_enforced()
    {
        Same("""
            echo secret > f; chmod 600 f; mkdir d
            python3 - <<'PY'
            import os, struct
            def err(fn):
                try: fn(); return "ok"
                except OSError as e: return e.strerror
            os.setxattr('f', 'user.color', b'blue'); os.setxattr('d', 'trusted.t', b'\x00\x01')
            print(os.getxattr('f', 'user.color'), sorted(os.listxattr('f')), os.getxattr('d', 'trusted.t'))
            print(err(lambda: os.setxattr('f', 'user.color', b'x', os.XATTR_CREATE)), err(lambda: os.setxattr('f', 'user.new', b'x', os.XATTR_REPLACE)))
            os.setxattr('f', 'user.color', b'red', os.XATTR_REPLACE); print(os.getxattr('f', 'user.color'))
            os.removexattr('f', 'user.color'); print(err(lambda: os.getxattr('f', 'user.color')), err(lambda: os.removexattr('f', 'user.color')))
            os.setxattr('f', 'user.big', b'v' * 65536); print(len(os.getxattr('f', 'user.big')))
            print(err(lambda: os.setxattr('f', 'bogus.name', b'x')))
            # An access ACL: user_obj rw-, user 65534 r--, group_obj ---, mask r--, other ---
            acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in [(1, 6, 0xFFFFFFFF), (2, 4, 65534), (4, 0, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])
            os.setxattr('f', 'system.posix_acl_access', acl)
            PY
            stat -c '%a' f
            setpriv --reuid 65534 --regid 65534 --clear-groups cat f
            python3 -c "import os; os.removexattr('f', 'system.posix_acl_access')"; stat -c '%a' f
            setpriv --reuid 65534 --regid 65534 --clear-groups cat f || true
            """, "b'blue' ['user.color'] b'\\x00\\x01'", "File exists No data available", "b'red'", "No data available No data available",
            "65536", "Operation not supported", "640\nsecret", "Permission denied");
    }

    [Fact]
    public void Ctime_moves_on_every_metadata_change_and_the_parent_follows_entries()
    {
        // Each line: did the ctime (of the file, or of the directory) move across the operation? ("moved"/"kept")
        Same("""
            echo x > f; mkdir d
            probe() { local a; a=$(stat -c %Z.%z "$1"); sleep 0.01; eval "$2"; [ "$(stat -c %Z.%z "$1")" != "$a" ] && echo "$3 moved" || echo "$3 kept"; }
            probe f 'chmod 600 f' chmod; probe f 'chown 1:1 f' chown; probe f 'ln f f2' link; probe f 'mv f2 f3' rename-other
            probe f 'truncate -s 1 f' truncate; probe f 'echo y >> f' write; probe f 'touch -m -d @5 f' utimes
            probe f 'python3 -c "import os; os.setxattr(\"f\", \"user.a\", b\"1\")"' setxattr; probe f 'cat f > /dev/null' read
            probe d 'touch d/new' dir-create; probe d 'rm d/new' dir-unlink; probe d 'mkdir d/s && mv d/s d/t' dir-rename
            """, "chmod moved", "write moved", "read kept", "dir-create moved");
    }

    [Fact]
    public void Sticky_directories_and_setuid_bits_follow_the_kernels_rules_for_other_users()
    {
        Same("""
            mkdir -m 1777 tmp; echo x > tmp/roots; chmod 666 tmp/roots
            echo x > s; chmod 4755 s; chown 65534:65534 s
            setpriv --reuid 65534 --regid 65534 --clear-groups sh -c 'rm tmp/roots 2>&1; mv tmp/roots tmp/x 2>&1; echo y >> s; stat -c %A s'
            ls tmp
            """, "Operation not permitted", "-rwxr-xr-x", "roots");
    }

    [Fact]
    public void Tar_with_xattrs_and_acls_round_trips()
    {
        Same("""
            mkdir src; echo data > src/f; mkdir src/d
            python3 - <<'PY'
            import os, struct
            os.setxattr('src/f', 'user.note', b'kept by tar')
            acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in [(1, 6, 0xFFFFFFFF), (2, 4, 1234), (4, 4, 0xFFFFFFFF), (0x10, 6, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])
            os.setxattr('src/f', 'system.posix_acl_access', acl)
            os.setxattr('src/d', 'system.posix_acl_default', acl)
            PY
            tar --xattrs --xattrs-include='*' --acls -cf a.tar -C src . && mkdir out && tar --xattrs --xattrs-include='*' --acls -xpf a.tar -C out
            python3 -c "
            import os
            for p in ['out/f', 'out/d']:
                print(p, oct(os.stat(p).st_mode & 0o7777), sorted((n, os.getxattr(p, n).hex()) for n in os.listxattr(p)))
            "
            echo new > out/d/child; python3 -c "import os; print(sorted(os.listxattr('out/d/child')))"
            """, "out/f 0o660", "user.note", "system.posix_acl_default", "system.posix_acl_access");
    }

    [Fact]
    public void A_setgid_directory_passes_its_group_and_its_bit_on()
    {
        Same("""
            mkdir shared; chgrp 1234 shared; chmod 2775 shared
            touch shared/f; mkdir shared/sub
            stat -c '%n %g %A' shared/f shared/sub
            """, "shared/f 1234", "shared/sub 1234 drwxr-sr-x");
    }
}
