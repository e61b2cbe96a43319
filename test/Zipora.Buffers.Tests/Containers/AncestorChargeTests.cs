using System.IO;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A limit set on an ancestor cgroup (a Kubernetes pod's, over its containers; a systemd slice's, over its services)
/// is reached by the charge of every cgroup under it. The process's own charge can be far below that limit while the
/// ancestor is at it, and the kernel's OOM killer acts on the ancestor's charge.
/// </summary>
public sealed class AncestorChargeTests
{
    [Theory]
    [InlineData(950_000_000, true)]
    [InlineData(500_000_000, false)]
    public void AVersion2ParentNearItsLimitIsPressureWhateverTheProcesssOwnChargeIs(long parentCharge, bool underPressure)
    {
        Skip.When(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: false), "the GC reports high memory load on this machine, which is pressure whatever the cgroup says");
        using var files = new TemporaryFiles();
        string mount = files.Create("mnt");
        string pod = files.Create("mnt/pod");
        string own = files.Create("mnt/pod/box");
        File.WriteAllText(Path.Join(pod, "memory.max"), "1000000000\n");
        File.WriteAllText(Path.Join(pod, "memory.current"), $"{parentCharge}\n");
        File.WriteAllText(Path.Join(pod, "memory.stat"), $"anon {parentCharge}\ninactive_file 0\n");
        File.WriteAllText(Path.Join(own, "memory.max"), "max\n");
        File.WriteAllText(Path.Join(own, "memory.current"), "100000000\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), "anon 100000000\ninactive_file 0\n");
        string cgroupFile = files.Write("cgroup", "0::/pod/box\n");
        string mountInfo = files.Write("mountinfo", $"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n");
        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);
        Assert.NotNull(cgroup);

        // Before: the process's 100 MB against the pod's 1 GB limit, 10%, never pressure while the pod stood at 95%.
        Assert.Equal(underPressure, MemoryBudget.ForCgroup(cgroup).IsUnderPressure(managedMemory: false));
    }

    [Theory]
    [InlineData(950_000_000, true)]
    [InlineData(500_000_000, false)]
    public void AVersion1ParentNearItsLimitIsPressureWhateverTheProcesssOwnChargeIs(long parentCharge, bool underPressure)
    {
        Skip.When(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: false), "the GC reports high memory load on this machine, which is pressure whatever the cgroup says");
        using var files = new TemporaryFiles();
        string mount = files.Create("memory");
        string pod = files.Create("memory/pod");
        string own = files.Create("memory/pod/box");
        File.WriteAllText(Path.Join(pod, "memory.limit_in_bytes"), "1000000000\n");
        File.WriteAllText(Path.Join(pod, "memory.usage_in_bytes"), $"{parentCharge}\n");
        File.WriteAllText(Path.Join(pod, "memory.stat"), "hierarchical_memory_limit 1000000000\ntotal_inactive_file 0\n");
        File.WriteAllText(Path.Join(own, "memory.limit_in_bytes"), "9223372036854771712\n");
        File.WriteAllText(Path.Join(own, "memory.usage_in_bytes"), "100000000\n");
        File.WriteAllText(Path.Join(own, "memory.stat"), "hierarchical_memory_limit 1000000000\ntotal_inactive_file 0\n");
        string cgroupFile = files.Write("cgroup", "4:memory:/pod/box\n0::/\n");
        string mountInfo = files.Write("mountinfo", $"35 31 0:32 / {mount} rw,relatime - cgroup cgroup rw,memory\n");
        CgroupMemory? cgroup = CgroupMemory.Find(cgroupFile, mountInfo);
        Assert.NotNull(cgroup);

        Assert.Equal(underPressure, MemoryBudget.ForCgroup(cgroup).IsUnderPressure(managedMemory: false));
    }
}
