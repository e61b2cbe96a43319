using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The memory the environment gives the process, and whether it is running short: the memory cgroup's limit and usage
/// (a container's), or else the GC's heap hard limit when one is set. The pools size their default caches from the
/// limit and give idle memory back when the usage nears it.
/// </summary>
/// <remarks>
/// The GC's own view of memory load is recorded at each collection and lags behind a process whose native memory or
/// allocation rate grows between collections; the cgroup's charge is read when asked, so pressure is seen while it
/// builds, before the kernel's OOM killer acts at the limit.
/// </remarks>
internal sealed class MemoryBudget
{
    /// <summary>Usage at or above this share of the limit counts as pressure: idle memory is given back.</summary>
    public const double PressureShareOfLimit = 0.85;

    // The GC's heap hard limit is a wall (an OutOfMemoryException, no reclaim as the kernel's), and the heap's
    // committed bytes are read as of the last collection: the share is lower than the cgroup's, so a trim is due
    // while the growth between two collections still fits (at 85%, 1 of 5 runs still failed).
    private const double PressureShareOfHeapLimit = 0.75;

    // The GC's high-load threshold is 90% of memory by default; trim a little before it, as the runtime's ArrayPool does.
    private const double PressureShareOfHighLoad = 0.9;

    // Readings are shared for this long: every pool's tick and every collection ask, and a cgroup read costs file I/O.
    private const long ReadingLifetimeMilliseconds = 50;

    private readonly CgroupMemory? _cgroup;

    // Whether Limit is the cgroup's own (its charge can then be read against it at any time).
    private readonly bool _limitIsCgroups;
    private Reading? _lastReading;

    private MemoryBudget(CgroupMemory? cgroup, bool limitIsCgroups, long limit, string source)
    {
        _cgroup = cgroup;
        _limitIsCgroups = limitIsCgroups;
        Limit = limit;
        Source = source;
    }

    /// <summary>The process's budget, found when first asked.</summary>
    public static MemoryBudget Current { get; } = Detect();

    /// <summary>The memory limit found at start-up, in bytes; 0 when there is none.</summary>
    public long Limit { get; }

    /// <summary>Whether the limit is a cgroup's, whose charge can be read at any time (a GC hard limit's cannot).</summary>
    public bool HasCgroupLimit => _limitIsCgroups;

    /// <summary>
    /// Whether the process is in a memory cgroup whose charge and limit can be read, limited now or not: a running
    /// container's limit can be set or lowered later (<c>docker update --memory</c>), and is read afresh at every reading.
    /// </summary>
    public bool HasCgroup => _cgroup is not null;

    /// <summary>Where <see cref="Limit"/> comes from: <c>cgroup v1</c>, <c>cgroup v2</c>, <c>GC heap hard limit</c> or <c>none</c>.</summary>
    public string Source { get; }

    /// <summary>
    /// Whether memory is running short now for a pool that holds <paramref name="managedMemory"/> or native memory: the
    /// usage (less droppable file cache) of the cgroup, or of any ancestor with a limit of its own, at or above
    /// <see cref="PressureShareOfLimit"/> of that limit, or the GC's last recorded load near its high-load threshold;
    /// for managed memory (pinned arrays, a <see cref="TieredArrayPool"/>'s arrays) also the GC's committed heap near the
    /// memory it may use (its heap hard limit).
    /// </summary>
    /// <remarks>
    /// The heap's limit is not native memory's: a pool of native memory trimmed for it frees nothing the GC may use, and
    /// an application whose steady heap sits above that share (a cache, in a container) would have every such pool
    /// emptied once a second, for good (ManagedHeapPressureTests).
    /// </remarks>
    public bool IsUnderPressure(bool managedMemory)
    {
        Reading reading = Read();
        return reading.MemoryShort || (managedMemory && reading.ManagedHeapShort);
    }

    /// <summary>
    /// Whether memory is running short for <paramref name="pool"/>, as <see cref="IsUnderPressure"/> says for the memory
    /// it holds; asks the pool what it holds only when the heap is short (a pool may count its cached blocks to say).
    /// </summary>
    public bool IsUnderPressureFor(IReclaimablePool pool)
    {
        Reading reading = Read();
        return reading.MemoryShort || (reading.ManagedHeapShort && pool.HoldsManagedMemory);
    }

    /// <summary>The latest usage and limit of the cgroup, or of the ancestor nearest its limit (0 and 0 outside one), for reports.</summary>
    public (long Usage, long Limit) CgroupCharge()
    {
        Reading reading = Read();
        return (reading.Usage, reading.Limit);
    }

    /// <summary>
    /// The default of a cache cap under this budget: <paramref name="standard"/>, or <paramref name="shareOfLimit"/> of
    /// the limit when that is smaller.
    /// </summary>
    public long CapWithin(long standard, double shareOfLimit) => Limit > 0 ? Math.Min(standard, (long)(Limit * shareOfLimit)) : standard;

    /// <summary>A budget of <paramref name="limit"/> bytes with no cgroup behind it (tests of the derived caps).</summary>
    internal static MemoryBudget ForLimit(long limit) => new(null, limitIsCgroups: false, limit, limit > 0 ? "test" : "none");

    /// <summary>The budget <see cref="Current"/> would be in <paramref name="cgroup"/> (tests of the pressure threshold, on a cgroup's files of their own).</summary>
    internal static MemoryBudget ForCgroup(CgroupMemory cgroup) => Detect(cgroup);

    private static MemoryBudget Detect() => Detect(CgroupMemory.Find());

    private static MemoryBudget Detect(CgroupMemory? cgroup)
    {
        if (cgroup is not null && cgroup.TryRead(out long limit, out _) && limit > 0)
        {
            return new MemoryBudget(cgroup, limitIsCgroups: true, limit, cgroup.IsVersion1 ? "cgroup v1" : "cgroup v2");
        }

        // Outside a limited cgroup the GC reports the machine's memory, unless a heap hard limit was configured.
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long physical = MachineMemory.TotalBytes();
        if (available > 0 && physical > 0 && available < physical)
        {
            return new MemoryBudget(cgroup, limitIsCgroups: false, available, "GC heap hard limit");
        }

        return new MemoryBudget(cgroup, limitIsCgroups: false, 0, "none");
    }

    private Reading Read()
    {
        long now = Environment.TickCount64;
        Reading? last = Volatile.Read(ref _lastReading);
        if (last is not null && now - last.TakenAt < ReadingLifetimeMilliseconds)
        {
            return last;
        }

        long usage = 0, limit = 0;
        bool cgroupShort = _cgroup is not null && _cgroup.TryReadNearestLimit(out limit, out usage) && limit > 0 && usage >= limit * PressureShareOfLimit;
        GCMemoryInfo info = GC.GetGCMemoryInfo();
        bool gcShort = info.HighMemoryLoadThresholdBytes > 0 && info.MemoryLoadBytes >= info.HighMemoryLoadThresholdBytes * PressureShareOfHighLoad;

        // The GC's heap hard limit (75% of a container's limit by default) is reached before either of the above: its
        // load is the process's against the container's limit, and the cgroup's charge was at 79% when a heap holding
        // 171 MB of the pool's idle pinned arrays failed with "Out of memory" (KestrelBurstContainerTests).
        // The committed bytes are the last collection's: a heap growing by large objects may go from 206 to 344 MB of a
        // 384 MB limit with no collection between (KestrelBurstContainerTests, "Out of memory" with 59 MB idle), so the
        // bytes allocated now, with the holes the last collection left, count too.
        long committed = Math.Max(info.TotalCommittedBytes, GC.GetTotalMemory(forceFullCollection: false) + info.FragmentedBytes);
        bool heapShort = info.TotalAvailableMemoryBytes > 0 && committed >= info.TotalAvailableMemoryBytes * PressureShareOfHeapLimit;
        var reading = new Reading(now, usage, limit, cgroupShort || gcShort, heapShort);
        Volatile.Write(ref _lastReading, reading);
        return reading;
    }

    private sealed record Reading(long TakenAt, long Usage, long Limit, bool MemoryShort, bool ManagedHeapShort);
}
