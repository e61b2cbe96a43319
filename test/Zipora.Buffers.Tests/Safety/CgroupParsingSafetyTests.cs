using System;
using System.IO;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The memory budget is found once, in a static initializer every pool goes through, from <c>/proc/self/cgroup</c>,
/// <c>/proc/self/mountinfo</c> and the cgroup's files: whatever those hold (missing fields, "max", negative, huge or
/// non-numeric figures, escaped spaces, a root other than "/", paths leading out of the mount, unreadable files),
/// finding and reading never throws, never reads outside the cgroup mount, and reports no limit it did not read.
/// </summary>
public sealed class CgroupParsingSafetyTests
{
    public static TheoryData<string> MalformedCgroupFiles =>
    [
        string.Empty,
        "\n\n\n",
        "garbage",
        "0:",
        "::",
        "0::",
        "4:memory",
        ":memory:",
        "\0\0\0",
        new string('x', 100_000),
    ];

    public static TheoryData<string> MalformedMountInfoLines =>
    [
        string.Empty,
        " - ",
        "- cgroup2",
        "30 25 0:26 / - cgroup2 cgroup2 rw",
        "30 25 0:26 - cgroup2 cgroup2 rw",
        "30 25 0:26 / {mount} rw - cgroup2",
        "30 25 0:26 / {mount} rw - ",
        "30 25 0:26 / {mount} rw -  cgroup2  cgroup2  rw",
        "30 25 0:26 / {mount} rw - cgroup cgroup",
        "30 25 0:26 / {mount} rw - cgroup cgroup rw,cpu",
        "30 25 0:26 /elsewhere {mount} rw - cgroup2 cgroup2 rw",
    ];

    [Theory]
    [MemberData(nameof(MalformedCgroupFiles))]
    public void AMalformedCgroupFileFindsNothingAndThrowsNothing(string cgroupText)
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string cgroupFile = files.Write("cgroup", cgroupText);
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");

        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);

        // "0::" names the root of the hierarchy, which is the mount itself; nothing else names a memory cgroup.
        if (cgroupText.Trim() == "0::")
        {
            Assert.NotNull(cgroup);
            Assert.Equal(mount, cgroup.Directory.TrimEnd('/'));
        }
        else
        {
            Assert.Null(cgroup);
        }
    }

    [Theory]
    [MemberData(nameof(MalformedMountInfoLines))]
    public void AMalformedMountInfoLineIsSkipped(string line)
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        files.Create("mnt/app");
        string cgroupFile = files.Write("cgroup", "0::/app\n");
        string mountInfo = files.Write("mountinfo", line.Replace("{mount}", mount, StringComparison.Ordinal) + "\n");

        Assert.Null(CgroupMemory.Find(cgroupFile, mountInfo));
    }

    [Fact]
    public void AMountRootOtherThanSlashIsStrippedFromTheCgroupPathAndAPathOutsideItOrOnlySharingItsPrefixIsNotFound()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string own = files.Create("mnt/worker");
        files.Create("mnt/ication/worker");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 /app {mount} rw - cgroup2 cgroup2 rw\n");

        CgroupMemory? inside = CgroupMemory.Find(files.Write("cgroup", "0::/app/worker\n"), mountInfo);
        Assert.NotNull(inside);
        Assert.Equal(own, inside.Directory);

        Assert.Null(CgroupMemory.Find(files.Write("cgroup", "0::/application/worker\n"), mountInfo));
        Assert.Null(CgroupMemory.Find(files.Write("cgroup", "0::/other\n"), mountInfo));
    }

    /// <summary>
    /// In a cgroup namespace a process whose cgroup lies outside the namespace's root sees a path that climbs out of it
    /// ("/../sibling"). Joined to the mount point, that path leaves the cgroup file system: the budget must not read
    /// the limit and usage from whatever directory it lands in.
    /// </summary>
    [Fact]
    public void ACgroupPathClimbingOutOfTheMountIsNotFollowed()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("cgroupfs/mnt");
        string outside = files.Create("cgroupfs/sibling");
        File.WriteAllText(Path.Join(outside, "memory.max"), "4096\n");
        File.WriteAllText(Path.Join(outside, "memory.current"), "4096\n");
        File.WriteAllText(Path.Join(outside, "memory.stat"), "inactive_file 0\n");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");

        Assert.Null(CgroupMemory.Find(files.Write("cgroup", "0::/../sibling\n"), mountInfo));
        Assert.Null(CgroupMemory.Find(files.Write("cgroup", "0::/app/../../sibling\n"), mountInfo));
    }

    /// <summary>The kernel writes a space in a mountinfo path as <c>\040</c> (and a tab, newline and backslash likewise in octal).</summary>
    [Fact]
    public void AMountPointWithAnEscapedSpaceIsFound()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("cgroup fs");
        string own = files.Create("cgroup fs/my app");
        File.WriteAllText(Path.Join(own, "memory.max"), "268435456\n");
        File.WriteAllText(Path.Join(own, "memory.current"), "1000\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), "inactive_file 0\n");
        string escaped = mount.Replace(" ", "\\040", StringComparison.Ordinal);
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {escaped} rw,nosuid - cgroup2 cgroup2 rw\n");

        CgroupMemory? cgroup = CgroupMemory.Find(files.Write("cgroup", "0::/my app\n"), mountInfo);

        Assert.NotNull(cgroup);
        Assert.Equal(own, cgroup.Directory);
        Assert.True(cgroup.TryRead(out long limit, out long usage));
        Assert.Equal(268435456, limit);
        Assert.Equal(1000, usage);
    }

    /// <summary>A cgroup or mountinfo file that exists but cannot be read (here: an I/O error on read) leaves the budget without a cgroup, not every pool without a type initializer.</summary>
    [Fact]
    public void AnUnreadableCgroupOrMountInfoFileFindsNothingAndThrowsNothing()
    {
        Skip.Unless(OperatingSystem.IsLinux() && File.Exists("/proc/self/mem"), "needs /proc/self/mem, which exists and fails every read at offset 0");
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");
        string cgroupFile = files.Write("cgroup", "0::/\n");

        Assert.Null(CgroupMemory.Find("/proc/self/mem", mountInfo));
        Assert.Null(CgroupMemory.Find(cgroupFile, "/proc/self/mem"));
    }

    /// <summary>Figures as a broken or hostile cgroup file system could hold them: each either reads as what it says or is not read.</summary>
    public static TheoryData<string, string, string, bool, long, long> Version2Figures => new()
    {
        // memory.max, memory.current, memory.stat, readable, limit, usage
        { "max\n", "1000\n", "inactive_file 0\n", true, 0, 1000 },
        { "-1\n", "1000\n", "inactive_file 0\n", true, 0, 1000 },
        { "99999999999999999999999\n", "1000\n", "inactive_file 0\n", true, 0, 1000 },
        { "abc\n", "1000\n", "inactive_file 0\n", true, 0, 1000 },
        { string.Empty, "1000\n", "inactive_file 0\n", true, 0, 1000 },
        { "9223372036854775807\n", "1000\n", "inactive_file 0\n", true, 0, 1000 },
        { "4096\n", "-5\n", "inactive_file 0\n", false, 0, 0 },
        { "4096\n", "99999999999999999999999\n", "inactive_file 0\n", false, 0, 0 },
        { "4096\n", "1000\n", "inactive_file 5000\n", true, 4096, 0 },
        { "4096\n", "1000\n", "inactive_file -5\n", true, 4096, 1000 },
        { "4096\n", "1000\n", "inactive_file 99999999999999999999999\n", true, 4096, 1000 },
        { "4096\n", "1000\n", "inactive_file\ninactive_filex 7\n", true, 4096, 1000 },
        { "4096\n", "1000\n", string.Empty, true, 4096, 1000 },
    };

    [Theory]
    [MemberData(nameof(Version2Figures))]
    public void Version2FiguresReadAsTheySayOrNotAtAll(string max, string current, string stat, bool readable, long expectedLimit, long expectedUsage)
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string own = files.Create("mnt/app");
        File.WriteAllText(Path.Join(own, "memory.max"), max);
        File.WriteAllText(Path.Join(own, "memory.current"), current);
        File.WriteAllText(Path.Join(own, "memory.stat"), stat);
        CgroupMemory? cgroup = CgroupMemory.Find(files.Write("cgroup", "0::/app\n"), files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n"));
        Assert.NotNull(cgroup);

        Assert.Equal(readable, cgroup.TryRead(out long limit, out long usage));
        Assert.Equal(expectedLimit, limit);
        Assert.Equal(expectedUsage, usage);
    }

    [Fact]
    public void MissingOrDirectoryCgroupFilesAreNotReadAndThrowNothing()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string own = files.Create("mnt/app");
        CgroupMemory? cgroup = CgroupMemory.Find(files.Write("cgroup", "0::/app\n"), files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n"));
        Assert.NotNull(cgroup);

        // Nothing there at all.
        Assert.False(cgroup.TryRead(out _, out _));

        // memory.current present, memory.stat a directory; then the files themselves directories.
        File.WriteAllText(Path.Join(own, "memory.current"), "1000\n");
        Directory.CreateDirectory(Path.Join(own, "memory.stat"));
        Assert.False(cgroup.TryRead(out _, out _));
        File.Delete(Path.Join(own, "memory.current"));
        Directory.CreateDirectory(Path.Join(own, "memory.current"));
        Assert.False(cgroup.TryRead(out _, out _));

        // The cgroup removed under the reader (a container being torn down).
        Directory.Delete(own, recursive: true);
        Assert.False(cgroup.TryRead(out _, out _));
    }

    [Fact]
    public void Version1FiguresThatAreNegativeHugeOrMissingAreNotRead()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("memory");
        string own = files.Create("memory/box");
        CgroupMemory? cgroup = CgroupMemory.Find(
            files.Write("cgroup", "4:memory:/box\n"),
            files.Write("mountinfo", $"35 31 0:32 / {mount} rw - cgroup cgroup rw,memory\n"));
        Assert.NotNull(cgroup);
        Assert.True(cgroup.IsVersion1);

        File.WriteAllText(Path.Join(own, "memory.limit_in_bytes"), "-1\n");
        File.WriteAllText(Path.Join(own, "memory.usage_in_bytes"), "1000\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), "hierarchical_memory_limit -7\n");
        Assert.False(cgroup.TryRead(out _, out _));

        File.WriteAllText(Path.Join(own, "memory.limit_in_bytes"), "99999999999999999999999\n");
        Assert.False(cgroup.TryRead(out _, out _));

        File.WriteAllText(Path.Join(own, "memory.limit_in_bytes"), "9223372036854771712\n");
        Assert.True(cgroup.TryRead(out long limit, out long usage));
        Assert.Equal(0, limit);
        Assert.Equal(1000, usage);

        File.Delete(Path.Join(own, "memory.stat"));
        Assert.False(cgroup.TryRead(out _, out _));
    }
}
