using System;

namespace Zipora.Buffers;

/// <summary>
/// How long the cgroup timer waits before its next reading: the time memory growing at
/// <see cref="FastestGrowthBytesPerMillisecond"/> would take to reach the pressure share of the limit, within
/// <see cref="ShortestMilliseconds"/> and <see cref="LongestMilliseconds"/>. A .NET timer's wake costs this machine about
/// half a millisecond of CPU (the thread pool spins after each work item), so ten readings a second cost an idle
/// process 1.15% of a core (115 ms per 10 s, against 0.9 ms with no pool); read once a second where the limit is far
/// or absent (a limit can still be set on the running container, and is found within a second), and ten times a
/// second only close to it, where the OOM killer is near.
/// </summary>
internal static class CgroupWatchPeriod
{
    /// <summary>The period close to the limit: at 200 MB/s of growth, 20 MB of warning per reading.</summary>
    public const int ShortestMilliseconds = 100;

    /// <summary>The period with no limit, or one far away.</summary>
    public const int LongestMilliseconds = 1_000;

    // About 1 GB/s: faster than a process writes fresh memory it must keep, so the reading comes before the pressure.
    private const long FastestGrowthBytesPerMillisecond = 1024 * 1024;

    /// <summary>The wait before the next reading, for a cgroup charged <paramref name="usage"/> of <paramref name="limit"/> (0 for none).</summary>
    public static int NextMilliseconds(long usage, long limit)
    {
        if (limit <= 0)
        {
            return LongestMilliseconds;
        }

        long headroom = (long)(limit * MemoryBudget.PressureShareOfLimit) - usage;
        return (int)Math.Clamp(headroom / FastestGrowthBytesPerMillisecond, ShortestMilliseconds, LongestMilliseconds);
    }
}
