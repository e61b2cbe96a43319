using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Native;

/// <summary>
/// The memory limit and usage of the Linux control group the process runs in: the cgroup v1 memory controller where
/// it is mounted (hybrid hosts), otherwise the cgroup v2 unified hierarchy. Found once from <c>/proc/self/cgroup</c>
/// and <c>/proc/self/mountinfo</c>; the figures are read afresh on every <see cref="TryRead"/>, as a container's
/// limit can be changed while it runs.
/// </summary>
internal sealed class CgroupMemory
{
    private readonly CgroupDirectory _cgroup;
    private readonly string _directory;

    private CgroupMemory(CgroupDirectory cgroup)
    {
        _cgroup = cgroup;
        _directory = cgroup.Path;
    }

    /// <summary>Whether the limits come from the cgroup v1 memory controller (else the v2 unified hierarchy).</summary>
    public bool IsVersion1 => _cgroup.IsVersion1;

    /// <summary>The directory of the process's memory cgroup.</summary>
    public string Directory => _directory;

    /// <summary>The process's memory cgroup, or <see langword="null"/> off Linux or where none is mounted or readable.</summary>
    public static CgroupMemory? Find() => Find("/proc/self/cgroup", "/proc/self/mountinfo");

    /// <summary>The memory cgroup described by the given <c>cgroup</c> and <c>mountinfo</c> files (tests point them elsewhere).</summary>
    internal static CgroupMemory? Find(string cgroupFile, string mountInfoFile) =>
        CgroupDirectory.Find("memory", cgroupFile, mountInfoFile) is { } found ? new CgroupMemory(found) : null;

    /// <summary>
    /// Reads the limit that applies to the process (the tightest of its cgroup and every ancestor; in v2 the lower of
    /// <c>memory.max</c> and <c>memory.high</c>) and the memory the
    /// cgroup is charged for, less the file cache the kernel can drop without harm (inactive file pages), as the GC
    /// counts it. <paramref name="limit"/> is 0 when no limit is set.
    /// </summary>
    /// <returns>Whether the figures could be read.</returns>
    public bool TryRead(out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        try
        {
            return _cgroup.IsVersion1 ? TryReadVersion1(out limit, out usage) : TryReadVersion2(out limit, out usage);
        }
        catch (IOException)
        {
            // The cgroup went away (the container is being torn down) or a file vanished between two reads.
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// Reads the limit and charge (less inactive file pages) of whichever of the cgroup and its ancestors is nearest
    /// its limit: an ancestor's limit (a Kubernetes pod's, over its containers) is reached by the charge of every
    /// cgroup under it, which the process's own charge does not show, and the OOM killer acts on the ancestor's.
    /// Where an ancestor's files cannot be seen (a cgroup namespace), the tightest limit against the process's own
    /// charge, as <see cref="TryRead"/> reads them.
    /// </summary>
    /// <returns>Whether the figures could be read.</returns>
    public bool TryReadNearestLimit(out long limit, out long usage)
    {
        if (!TryRead(out limit, out usage))
        {
            return false;
        }

        try
        {
            foreach (string directory in _cgroup.UpToMountPoint())
            {
                if (TryReadLevel(directory, out long levelLimit, out long levelUsage)
                    && (limit == 0 || (double)levelUsage / levelLimit > (double)usage / limit))
                {
                    limit = levelLimit;
                    usage = levelUsage;
                }
            }
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            // An ancestor went away between two reads, or its files are denied: the levels read so far stand.
        }

        return true;
    }

    /// <summary>One cgroup's own limit and charge (less inactive file pages); false where it has no limit or its files cannot be read.</summary>
    private bool TryReadLevel(string directory, out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        string chargeFile = _cgroup.IsVersion1 ? "memory.usage_in_bytes" : "memory.current";
        string statFile = Path.Join(directory, "memory.stat");
        long own;
        if (_cgroup.IsVersion1 ? !CgroupDirectory.TryReadNumber(Path.Join(directory, "memory.limit_in_bytes"), out own) : !TryReadVersion2Limit(directory, out own))
        {
            return false;
        }

        if (Limit(own) == 0
            || !CgroupDirectory.TryReadNumber(Path.Join(directory, chargeFile), out long charged) || !File.Exists(statFile))
        {
            return false;
        }

        // v1 folds the children into the total_ figures of a parent (hierarchy accounting); v2's figures are hierarchical.
        long inactiveFile = StatValue(File.ReadAllText(statFile), _cgroup.IsVersion1 ? "total_inactive_file" : "inactive_file");
        limit = own;
        usage = Math.Max(0, charged - inactiveFile);
        return true;
    }

    private bool TryReadVersion1(out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        if (!CgroupDirectory.TryReadNumber(Path.Join(_directory, "memory.limit_in_bytes"), out long own)
            || !CgroupDirectory.TryReadNumber(Path.Join(_directory, "memory.usage_in_bytes"), out long charged))
        {
            return false;
        }

        // With hierarchy accounting the kernel already folds the ancestors' limits into one figure.
        string stat = File.ReadAllText(Path.Join(_directory, "memory.stat"));
        long hierarchical = StatValue(stat, "hierarchical_memory_limit");
        limit = Limit(Math.Min(own, hierarchical > 0 ? hierarchical : long.MaxValue));
        usage = Math.Max(0, charged - StatValue(stat, "total_inactive_file"));
        return true;
    }

    private bool TryReadVersion2(out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        if (!CgroupDirectory.TryReadNumber(Path.Join(_directory, "memory.current"), out long charged))
        {
            return false;
        }

        // v2 has no folded figure: walk up to the mount point, taking the tightest limit on the way.
        long tightest = long.MaxValue;
        foreach (string directory in _cgroup.UpToMountPoint())
        {
            tightest = Math.Min(tightest, Version2Limit(directory));
        }

        limit = Limit(tightest);
        string stat = File.ReadAllText(Path.Join(_directory, "memory.stat"));
        usage = Math.Max(0, charged - StatValue(stat, "inactive_file"));
        return true;
    }

    /// <summary>
    /// One v2 cgroup's own limit: the lower of <c>memory.max</c> and <c>memory.high</c> (<see cref="long.MaxValue"/> for
    /// none). Over memory.high the kernel throttles the cgroup's every allocation and cannot reclaim anonymous memory
    /// without swap, so idle memory kept there keeps the process throttled.
    /// </summary>
    private static long Version2Limit(string directory) => TryReadVersion2Limit(directory, out long limit) ? limit : long.MaxValue;

    /// <summary><see cref="Version2Limit"/>; false where the cgroup has neither file (the root).</summary>
    private static bool TryReadVersion2Limit(string directory, out long limit)
    {
        bool hasMax = CgroupDirectory.TryReadNumber(Path.Join(directory, "memory.max"), out long max);
        bool hasHigh = CgroupDirectory.TryReadNumber(Path.Join(directory, "memory.high"), out long high);
        limit = Math.Min(hasMax ? max : long.MaxValue, hasHigh ? high : long.MaxValue);
        return hasMax || hasHigh;
    }

    private static long Limit(long value) => value >= CgroupDirectory.Unlimited ? 0 : value;

    /// <summary>The value of one "key value" line of a memory.stat file; 0 when absent.</summary>
    private static long StatValue(string stat, string key)
    {
        foreach (string line in stat.Split('\n'))
        {
            if (line.StartsWith(key, StringComparison.Ordinal) && line.Length > key.Length && line[key.Length] == ' '
                && long.TryParse(line.AsSpan(key.Length + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                return value;
            }
        }

        return 0;
    }
}
