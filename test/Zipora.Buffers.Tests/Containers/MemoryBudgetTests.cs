using System;
using System.IO;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

public sealed class MemoryBudgetTests
{
    private const long Megabyte = 1024 * 1024;

    [Fact]
    public void UnsetCapsTakeTheirShareOfTheLimitWhenThatIsSmaller()
    {
        var options = new TieredMemoryPoolOptions();
        options.ApplyMemoryBudget(MemoryBudget.ForLimit(512 * Megabyte));

        Assert.Equal(64 * Megabyte, options.MaxRetainedBytes);
        Assert.Equal(16 * Megabyte, options.RegionCacheMaxBytes);
        Assert.Equal(32 * Megabyte, options.HugeRegionCacheMaxBytes);
    }

    [Fact]
    public void CapsSetByTheUserWinOverTheLimit()
    {
        var options = new TieredMemoryPoolOptions { MaxRetainedBytes = 300 * Megabyte, RegionCacheMaxBytes = 1 };
        options.ApplyMemoryBudget(MemoryBudget.ForLimit(512 * Megabyte));

        Assert.Equal(300 * Megabyte, options.MaxRetainedBytes);
        Assert.Equal(1, options.RegionCacheMaxBytes);
        Assert.Equal(32 * Megabyte, options.HugeRegionCacheMaxBytes);
    }

    [Fact]
    public void WithoutALimitTheCapsKeepTheirStandardDefaults()
    {
        var options = new TieredMemoryPoolOptions();
        options.ApplyMemoryBudget(MemoryBudget.ForLimit(0));

        Assert.Equal(512 * Megabyte, options.MaxRetainedBytes);
        Assert.Equal(64 * Megabyte, options.RegionCacheMaxBytes);
        Assert.Equal(256 * Megabyte, options.HugeRegionCacheMaxBytes);
    }

    [Fact]
    public void ATrimUnderPressureGivesTheIdleMemoryBackCountsItAndBringsAdvice()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        pool.Rent(100_000).Dispose();
        pool.Rent(3 * (int)Megabyte).Dispose();
        Assert.True(pool.GetStatistics().BytesRetained > 3 * Megabyte);

        ((IReclaimablePool)pool).TrimUnderPressure();

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.PressureTrims);
        Assert.Equal(0, statistics.Large.BytesRetained);
        Assert.Equal(0, statistics.Huge.BytesRetained);
        Assert.Contains(pool.GetAdvice(), hint => hint.Contains("Memory ran short 1 times", StringComparison.Ordinal));
    }

    [Fact]
    public void ADisposedPoolIsNotTrimmedOrCountedUnderPressure()
    {
        var pool = new TieredMemoryPool();
        pool.Dispose();

        ((IReclaimablePool)pool).TrimUnderPressure();

        Assert.Equal(0, pool.GetStatistics().PressureTrims);
    }

    [Fact]
    public void AVersion2CgroupTakesTheTightestLimitOfItselfAndItsAncestorsAndCountsNoDroppableFileCache()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string parent = files.Create("mnt/app");
        string own = files.Create("mnt/app/worker");
        File.WriteAllText(Path.Join(parent, "memory.max"), "268435456\n");
        File.WriteAllText(Path.Join(own, "memory.max"), "max\n");
        File.WriteAllText(Path.Join(own, "memory.current"), "200000000\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), "anon 150000000\nfile 50000000\ninactive_file 30000000\n");
        string cgroupFile = files.Write("cgroup", "0::/app/worker\n");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw,nosuid - cgroup2 cgroup2 rw\n");

        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);

        Assert.NotNull(cgroup);
        Assert.False(cgroup.IsVersion1);
        Assert.True(cgroup.TryRead(out long limit, out long usage));
        Assert.Equal(268435456, limit);
        Assert.Equal(170000000, usage);
    }

    [Fact]
    public void AVersion1MemoryControllerWinsOverTheUnifiedHierarchyAndReadsTheHierarchicalLimit()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("memory");
        string own = files.Create("memory/pod/box");
        File.WriteAllText(Path.Join(own, "memory.limit_in_bytes"), "9223372036854771712\n");
        File.WriteAllText(Path.Join(own, "memory.usage_in_bytes"), "100000000\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), "cache 1\nhierarchical_memory_limit 536870912\ntotal_inactive_file 4000000\n");
        string cgroupFile = files.Write("cgroup", "4:memory:/pod/box\n0::/\n");
        string mountInfo = files.Write(
            "mountinfo",
            $"35 31 0:32 / {mount} rw,relatime - cgroup cgroup rw,memory\n41 31 0:36 / {files.Create("unified")} rw - cgroup2 cgroup2 rw\n");

        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);

        Assert.NotNull(cgroup);
        Assert.True(cgroup.IsVersion1);
        Assert.True(cgroup.TryRead(out long limit, out long usage));
        Assert.Equal(536870912, limit);
        Assert.Equal(96000000, usage);
    }

    [Fact]
    public void ACgroupWithoutALimitReportsNone()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        File.WriteAllText(Path.Join(mount, "memory.max"), "max\n");
        File.WriteAllText(Path.Join(mount, "memory.current"), "1000\n");
        File.WriteAllText(Path.Join(mount, "memory.stat"), "inactive_file 0\n");
        string cgroupFile = files.Write("cgroup", "0::/\n");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");

        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);

        Assert.NotNull(cgroup);
        Assert.True(cgroup.TryRead(out long limit, out _));
        Assert.Equal(0, limit);
    }

    [Theory]
    [InlineData(849_000_000, 0, false)]
    [InlineData(850_000_000, 0, true)]
    [InlineData(900_000_000, 60_000_000, false)]
    [InlineData(910_000_000, 60_000_000, true)]
    public void PressureStartsWhenTheChargeLessItsFileCacheReaches85PercentOfTheLimit(long current, long inactiveFile, bool underPressure)
    {
        Skip.When(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: false), "the GC reports high memory load on this machine, which is pressure whatever the cgroup says");
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string own = files.Create("mnt/box");
        File.WriteAllText(Path.Join(own, "memory.max"), "1000000000\n");
        File.WriteAllText(Path.Join(own, "memory.current"), $"{current}\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), $"anon {current - inactiveFile}\nfile {inactiveFile}\ninactive_file {inactiveFile}\n");
        string cgroupFile = files.Write("cgroup", "0::/box\n");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");
        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);
        Assert.NotNull(cgroup);

        Assert.Equal(underPressure, MemoryBudget.ForCgroup(cgroup).IsUnderPressure(managedMemory: false));
    }
}
