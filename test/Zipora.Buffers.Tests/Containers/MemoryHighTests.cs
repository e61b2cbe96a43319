using System.IO;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// cgroup v2's <c>memory.high</c> below <c>memory.max</c> (Kubernetes' memory QoS, systemd's <c>MemoryHigh=</c>): over
/// it the kernel throttles every allocation of the cgroup's processes and reclaims what it can, and anonymous memory
/// without swap it cannot. A pool that keeps its idle memory there keeps the process throttled, so memory.high is the
/// limit the pool sizes itself to and watches.
/// </summary>
public sealed class MemoryHighTests
{
    [Theory]
    [InlineData("1000000000", "500000000", 500_000_000)]
    [InlineData("max", "500000000", 500_000_000)]
    [InlineData("500000000", "max", 500_000_000)]
    [InlineData("500000000", "800000000", 500_000_000)]
    public void MemoryHighBelowMemoryMaxIsTheLimit(string max, string high, long expectedLimit)
    {
        using var files = new TemporaryFiles();
        CgroupMemory cgroup = Version2Cgroup(files, max, high, current: 100_000_000);

        Assert.True(cgroup.TryRead(out long limit, out _));
        Assert.Equal(expectedLimit, limit);
    }

    [Fact]
    public void AChargeNearMemoryHighIsPressureFarBelowMemoryMax()
    {
        Skip.When(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: false), "the GC reports high memory load on this machine, which is pressure whatever the cgroup says");
        using var files = new TemporaryFiles();
        CgroupMemory cgroup = Version2Cgroup(files, "1000000000", "500000000", current: 480_000_000);

        // Before: 480 MB against memory.max's 1 GB, 48%: no pressure while the kernel throttled the process at 500 MB.
        Assert.True(MemoryBudget.ForCgroup(cgroup).IsUnderPressure(managedMemory: false));
    }

    private static CgroupMemory Version2Cgroup(TemporaryFiles files, string max, string high, long current)
    {
        string mount = files.Create("mnt");
        string own = files.Create("mnt/box");
        File.WriteAllText(Path.Join(own, "memory.max"), $"{max}\n");
        File.WriteAllText(Path.Join(own, "memory.high"), $"{high}\n");
        File.WriteAllText(Path.Join(own, "memory.current"), $"{current}\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), $"anon {current}\ninactive_file 0\n");
        string cgroupFile = files.Write("cgroup", "0::/box\n");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");
        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);
        Assert.NotNull(cgroup);
        return cgroup;
    }
}
