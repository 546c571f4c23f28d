using System.Runtime.InteropServices;
using System.Text;
using Xunit.Abstractions;

namespace Daxfs.Branching.Fuse.Tests;

/// <summary>The kernel structs the server declares match &lt;linux/fuse.h&gt;, as gcc lays them out on this machine.</summary>
public class ProtocolLayoutTests(ITestOutputHelper output)
{
    /// <summary>Each declared struct, the kernel's name for it, and its fields (ours, the kernel's).</summary>
    private static readonly (Type Ours, string Kernel, (string Ours, string Kernel)[] Fields)[] Layouts =
    [
        (typeof(FuseInHeader), "fuse_in_header", [("Len", "len"), ("Opcode", "opcode"), ("Unique", "unique"), ("NodeId", "nodeid"), ("Uid", "uid"), ("Gid", "gid"), ("Pid", "pid"), ("TotalExtLen", "total_extlen")]),
        (typeof(FuseOutHeader), "fuse_out_header", [("Len", "len"), ("Error", "error"), ("Unique", "unique")]),
        (typeof(FuseAttr), "fuse_attr", [("Ino", "ino"), ("Size", "size"), ("Blocks", "blocks"), ("Atime", "atime"), ("Mtime", "mtime"), ("Ctime", "ctime"), ("AtimeNsec", "atimensec"), ("MtimeNsec", "mtimensec"), ("CtimeNsec", "ctimensec"), ("Mode", "mode"), ("Nlink", "nlink"), ("Uid", "uid"), ("Gid", "gid"), ("Rdev", "rdev"), ("BlkSize", "blksize"), ("Flags", "flags")]),
        (typeof(FuseEntryOut), "fuse_entry_out", [("NodeId", "nodeid"), ("Generation", "generation"), ("EntryValid", "entry_valid"), ("AttrValid", "attr_valid"), ("EntryValidNsec", "entry_valid_nsec"), ("AttrValidNsec", "attr_valid_nsec"), ("Attr", "attr")]),
        (typeof(FuseAttrOut), "fuse_attr_out", [("AttrValid", "attr_valid"), ("AttrValidNsec", "attr_valid_nsec"), ("Attr", "attr")]),
        (typeof(FuseSetAttrIn), "fuse_setattr_in", [("Valid", "valid"), ("Fh", "fh"), ("Size", "size"), ("LockOwner", "lock_owner"), ("Atime", "atime"), ("Mtime", "mtime"), ("Ctime", "ctime"), ("AtimeNsec", "atimensec"), ("MtimeNsec", "mtimensec"), ("CtimeNsec", "ctimensec"), ("Mode", "mode"), ("Uid", "uid"), ("Gid", "gid")]),
        (typeof(FuseOpenOut), "fuse_open_out", [("Fh", "fh"), ("OpenFlags", "open_flags")]),
        (typeof(FuseReadIn), "fuse_read_in", [("Fh", "fh"), ("Offset", "offset"), ("Size", "size"), ("ReadFlags", "read_flags")]),
        (typeof(FuseWriteIn), "fuse_write_in", [("Fh", "fh"), ("Offset", "offset"), ("Size", "size"), ("WriteFlags", "write_flags")]),
        (typeof(FuseWriteOut), "fuse_write_out", [("Size", "size")]),
        (typeof(FuseInitIn), "fuse_init_in", [("Major", "major"), ("Minor", "minor"), ("MaxReadahead", "max_readahead"), ("Flags", "flags"), ("Flags2", "flags2")]),
        (typeof(FuseInitOut), "fuse_init_out", [("Major", "major"), ("Minor", "minor"), ("MaxReadahead", "max_readahead"), ("Flags", "flags"), ("MaxBackground", "max_background"), ("CongestionThreshold", "congestion_threshold"), ("MaxWrite", "max_write"), ("TimeGran", "time_gran"), ("MaxPages", "max_pages"), ("Flags2", "flags2")]),
        (typeof(FuseStatfsOut), "fuse_statfs_out", [("Blocks", "st.blocks"), ("Bfree", "st.bfree"), ("Bavail", "st.bavail"), ("Files", "st.files"), ("Ffree", "st.ffree"), ("Bsize", "st.bsize"), ("NameLen", "st.namelen"), ("Frsize", "st.frsize")]),
        (typeof(FuseNotifyInvalInode), "fuse_notify_inval_inode_out", [("Ino", "ino"), ("Offset", "off"), ("Length", "len")]),
        (typeof(FuseNotifyInvalEntry), "fuse_notify_inval_entry_out", [("Parent", "parent"), ("NameLen", "namelen"), ("Flags", "flags")]),
        (typeof(FuseMknodIn), "fuse_mknod_in", [("Mode", "mode"), ("Rdev", "rdev"), ("Umask", "umask")]),
        (typeof(FuseMkdirIn), "fuse_mkdir_in", [("Mode", "mode"), ("Umask", "umask")]),
        (typeof(FuseRenameIn), "fuse_rename_in", [("NewDir", "newdir")]),
        (typeof(FuseRename2In), "fuse_rename2_in", [("NewDir", "newdir"), ("Flags", "flags")]),
        (typeof(FuseOpenIn), "fuse_open_in", [("Flags", "flags"), ("OpenFlags", "open_flags")]),
        (typeof(FuseCreateIn), "fuse_create_in", [("Flags", "flags"), ("Mode", "mode"), ("Umask", "umask"), ("OpenFlags", "open_flags")]),
        (typeof(FuseReleaseIn), "fuse_release_in", [("Fh", "fh"), ("Flags", "flags"), ("ReleaseFlags", "release_flags"), ("LockOwner", "lock_owner")]),
        (typeof(FuseDirent), "fuse_dirent", [("Ino", "ino"), ("Off", "off"), ("NameLen", "namelen"), ("Type", "type")]),
        (typeof(FuseLinkIn), "fuse_link_in", [("OldNodeId", "oldnodeid")]),
        (typeof(FuseGetxattrIn), "fuse_getxattr_in", [("Size", "size")]),
        (typeof(FuseGetxattrOut), "fuse_getxattr_out", [("Size", "size")]),
        (typeof(FuseSetxattrIn), "fuse_setxattr_in", [("Size", "size"), ("Flags", "flags")]),
        (typeof(FuseFallocateIn), "fuse_fallocate_in", [("Fh", "fh"), ("Offset", "offset"), ("Length", "length"), ("Mode", "mode")]),
    ];

    [Fact]
    public void Every_declared_struct_matches_the_kernels_header_compiled_by_gcc()
    {
        string dir = Directory.CreateTempSubdirectory("daxfs-layout-").FullName;
        try
        {
            var c = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include <linux/fuse.h>\nint main(void) {\n");
            foreach (var (_, cName, fields) in Layouts)
            {
                c.Append($"  printf(\"{cName} size %zu\\n\", sizeof(struct {cName}));\n");
                foreach (var (_, field) in fields)
                    c.Append($"  printf(\"{cName}.{field} %zu\\n\", offsetof(struct {cName}, {field}));\n");
            }
            // Without FUSE_SETXATTR_EXT (not asked for) the kernel sends the setxattr request in its compat size.
            c.Append("  printf(\"compat_setxattr size %d\\n\", FUSE_COMPAT_SETXATTR_IN_SIZE);\n");
            c.Append("  return 0;\n}\n");
            File.WriteAllText(Path.Combine(dir, "layout.c"), c.ToString());
            Sh.Ok(Sh.Run("gcc", ["-o", Path.Combine(dir, "layout"), Path.Combine(dir, "layout.c")]), "gcc (the header comes with linux-libc-dev)");
            var kernel = Sh.Ok(Sh.Run(Path.Combine(dir, "layout"), []), "layout").Out
                .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')).ToDictionary(p => p[0] + (p.Length == 3 ? " " + p[1] : ""), p => long.Parse(p[^1]));

            var mismatches = new List<string>();
            foreach (var (ours, name, fields) in Layouts)
            {
                long size = Marshal.SizeOf(ours);
                // The kernel grows some structs at the end over versions (ours may stop at the version we speak).
                long expected = ours == typeof(FuseSetxattrIn) ? kernel["compat_setxattr size"] : kernel[$"{name} size"];
                if (size != expected)
                    mismatches.Add($"{ours.Name}: {size} bytes, struct {name} has {expected}");
                foreach (var (field, kfield) in fields)
                {
                    long at = Marshal.OffsetOf(ours, field).ToInt64();
                    if (at != kernel[$"{name}.{kfield}"])
                        mismatches.Add($"{ours.Name}.{field} at {at}, {name}.{kfield} at {kernel[$"{name}.{kfield}"]}");
                }
            }
            output.WriteLine($"{Layouts.Length} structs, {Layouts.Sum(l => l.Fields.Length)} fields checked");
            Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
