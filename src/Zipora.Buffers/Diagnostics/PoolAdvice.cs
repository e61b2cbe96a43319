using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Plain-language hints drawn from a pool's statistics and the machine: each names what was observed, the setting
/// to change, and why. Rules need enough traffic to speak (a few hundred rents), so a quiet pool gets no advice.
/// </summary>
internal static class PoolAdvice
{
    private const long MinimumRents = 500;
    private const double LowHitRatio = 0.9;

    // Uncarved slab space worth a word: a few slabs per class are normal, this much is not.
    private const long NotableUncarvedBytes = 16L * 1024 * 1024;

    public static List<string> From(TieredMemoryPoolStatistics statistics, TieredMemoryPoolOptions options, HugePageInfo hugepages)
    {
        var advice = new List<string>();
        AdviseOnMemoryPressure(statistics, advice);
        AdviseOnHugepages(statistics, options, hugepages, advice);
        AdviseOnMmapThreshold(statistics, options, advice);
        AdviseOnUncarvedSlabs(statistics, advice);
        AdviseOnRegionCache(statistics.Large, options.RegionCacheMaxBytes, nameof(TieredMemoryPoolOptions.RegionCacheMaxBytes), advice);
        AdviseOnRegionCache(statistics.Huge, options.HugeRegionCacheMaxBytes, nameof(TieredMemoryPoolOptions.HugeRegionCacheMaxBytes), advice);
        AdviseOnMediumMisses(statistics, options, advice);
        return advice;
    }

    /// <summary>
    /// A medium tier's depots keep every free block there is, whatever the thread caches' limits: a rent misses only
    /// when every block of its class is in use (demand that grew: nothing to tune), sits in another thread's cache
    /// (larger caches would hold more there), or was given back to the OS. Only the last is a setting's doing: the idle
    /// release gave back what the next burst needed, and a longer delay keeps it. (The advice told to raise the thread
    /// caches' limits, which never turned a miss into a hit, even when they were at int.MaxValue.)
    /// </summary>
    private static void AdviseOnMediumMisses(TieredMemoryPoolStatistics statistics, TieredMemoryPoolOptions options, List<string> advice)
    {
        TierStatistics medium = statistics.Medium;
        TimeSpan delay = options.IdleReleaseDelay;
        if (medium.Rents < MinimumRents || medium.HitRatio >= LowHitRatio || medium.BytesEvicted == 0 || statistics.PressureTrims > 0
            || delay == System.Threading.Timeout.InfiniteTimeSpan || delay > TimeSpan.MaxValue / 2)
        {
            return;
        }

        advice.Add(Format(
            $"The medium tier served {medium.HitRatio:P0} of its {medium.Rents} rents from its caches, and its idle release gave {medium.BytesEvicted / 1024} KB back to the OS: traffic that pauses longer than IdleReleaseDelay (now {delay}) between bursts carves that memory again at each. A delay longer than the pauses keeps it (held while idle)."));
    }

    private static void AdviseOnMemoryPressure(TieredMemoryPoolStatistics statistics, List<string> advice)
    {
        if (statistics.PressureTrims == 0)
        {
            return;
        }

        string limit = statistics.MemoryLimit > 0 ? $"under a {statistics.MemoryLimit / (1024 * 1024)} MB memory limit" : "with the GC near its high memory load";
        advice.Add(Format(
            $"Memory ran short {statistics.PressureTrims} times {limit}: each time the pool gave all its idle memory back, and refilled its caches with fresh mappings afterwards. Give the process more memory, or lower MaxRetainedBytes (now {statistics.RetainedBytesCap / (1024 * 1024)} MB) so less idle memory is held in the first place."));
    }

    private static void AdviseOnHugepages(TieredMemoryPoolStatistics statistics, TieredMemoryPoolOptions options, HugePageInfo hugepages, List<string> advice)
    {
        long hugeBytes = statistics.Huge.BytesInUse + statistics.Huge.BytesRetained;
        if (!options.EnableHugepages || options.UsePinnedArrays || hugeBytes == 0 || hugepages.Total2MBPages > 0)
        {
            return;
        }

        long pages = (hugeBytes + HugePageInfo.Size2MB - 1) / HugePageInfo.Size2MB;
        string transparent = hugepages.TransparentHugePagesAvailable
            ? "transparent hugepages back them only where the kernel finds free 2 MB ranges"
            : $"transparent hugepages are '{hugepages.TransparentMode}', so they sit on 4 KB pages";
        advice.Add(Format(
            $"The huge tier holds {hugeBytes / (1024 * 1024)} MB and the machine reserves no hugepages (vm.nr_hugepages = 0): {transparent}. Reserve them with `echo {pages} > /proc/sys/vm/nr_hugepages` (as root) for fewer TLB misses."));
    }

    private static void AdviseOnMmapThreshold(TieredMemoryPoolStatistics statistics, TieredMemoryPoolOptions options, List<string> advice)
    {
        long largeRents = statistics.Large.Rents;
        if (largeRents < MinimumRents || options.MmapThreshold >= 1024 * 1024)
        {
            return;
        }

        long nearThreshold = statistics.SizeHistogram
            .Where(row => row.Tier == "large" && row.ClassSize <= 2L * options.MmapThreshold)
            .Sum(row => row.Rents);
        double share = (double)nearThreshold / largeRents;
        if (share < 0.5)
        {
            return;
        }

        // The advice must make a pool: the hugepage threshold stays above the mmap threshold, so where it is next above,
        // it moves up with it (what lies between them then goes to the large tier's regions instead of the huge tier's).
        int mmapThreshold = 2 * options.MmapThreshold;
        string hugepageThreshold = options.HugepageThreshold > mmapThreshold
            ? string.Empty
            : $" with HugepageThreshold = {2 * mmapThreshold} (it must stay above MmapThreshold)";
        advice.Add(Format(
            $"{share:P0} of the large tier's {largeRents} rents are between {options.MmapThreshold / 1024} and {options.MmapThreshold / 512} KB: MmapThreshold = {mmapThreshold}{hugepageThreshold} would serve them from the medium tier's per-thread caches (no lock, no mmap)."));
    }

    private static void AdviseOnUncarvedSlabs(TieredMemoryPoolStatistics statistics, List<string> advice)
    {
        long uncarved = statistics.BytesUncarved;
        long mapped = uncarved + statistics.Small.BytesInUse + statistics.Medium.BytesInUse + statistics.Small.BytesRetained
            + statistics.Medium.BytesRetained + statistics.Small.BytesFragmented + statistics.Medium.BytesFragmented;
        if (uncarved < NotableUncarvedBytes || uncarved * 4 < mapped)
        {
            return;
        }

        advice.Add(Format(
            $"{uncarved / (1024 * 1024)} MB of slab space ({(double)uncarved / mapped:P0} of what the small and medium tiers hold) is mapped but not cut into buffers: each size class maps a whole slab at its first rent. It is address space, not resident memory, but counts against the commit limit under vm.overcommit_memory = 2. Trim() gives back every slab whose buffers are all free."));
    }

    private static void AdviseOnRegionCache(TierStatistics tier, long maxBytes, string option, List<string> advice)
    {
        if (tier.Rents >= MinimumRents && tier.HitRatio < LowHitRatio && tier.BytesRetained + (4L * 1024 * 1024) >= maxBytes)
        {
            advice.Add(Format(
                $"The {tier.Name} tier reused a region for {tier.HitRatio:P0} of its {tier.Rents} rents while its cache sat at its byte limit: raise {option} (now {maxBytes / (1024 * 1024)} MB) to map less often."));
        }
    }

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
