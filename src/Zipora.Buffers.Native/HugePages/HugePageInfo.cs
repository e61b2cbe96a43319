using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Native;

/// <summary>
/// A snapshot of the machine's hugepages: the transparent hugepage mode and the reserved (hugetlb) 2 MB and 1 GB
/// pools, read from <c>/sys/kernel/mm</c> with <c>/proc/meminfo</c> as a fallback.
/// </summary>
public sealed class HugePageInfo
{
    /// <summary>Bytes in a 2 MB hugepage.</summary>
    public const long Size2MB = 2L * 1024 * 1024;

    /// <summary>Bytes in a 1 GB hugepage.</summary>
    public const long Size1GB = 1024L * 1024 * 1024;

    private const string SysHugePages = "/sys/kernel/mm/hugepages";
    private const string SysTransparentEnabled = "/sys/kernel/mm/transparent_hugepage/enabled";
    private const string ProcMeminfo = "/proc/meminfo";

    private HugePageInfo(TransparentHugePageMode mode, long total2MB, long free2MB, long total1GB, long free1GB, long anonHugePageBytes)
    {
        TransparentMode = mode;
        Total2MBPages = total2MB;
        Free2MBPages = free2MB;
        Total1GBPages = total1GB;
        Free1GBPages = free1GB;
        AnonHugePageBytes = anonHugePageBytes;
    }

    /// <summary>The transparent hugepage policy.</summary>
    public TransparentHugePageMode TransparentMode { get; }

    /// <summary>Reserved 2 MB hugepages (<c>nr_hugepages</c>).</summary>
    public long Total2MBPages { get; }

    /// <summary>Reserved 2 MB hugepages not yet faulted in by anyone.</summary>
    public long Free2MBPages { get; }

    /// <summary>Reserved 1 GB hugepages.</summary>
    public long Total1GBPages { get; }

    /// <summary>Reserved 1 GB hugepages not yet faulted in by anyone.</summary>
    public long Free1GBPages { get; }

    /// <summary>Bytes of anonymous memory the kernel currently backs with transparent hugepages, machine wide.</summary>
    public long AnonHugePageBytes { get; }

    /// <summary>Whether ranges can be given transparent hugepages by advising them.</summary>
    public bool TransparentHugePagesAvailable => TransparentMode is TransparentHugePageMode.Madvise or TransparentHugePageMode.Always;

    /// <summary>Reads the current state. Off Linux, or where the files cannot be read, everything is zero and <see cref="TransparentHugePageMode.Unsupported"/>.</summary>
    public static HugePageInfo Read()
    {
        if (!OperatingSystem.IsLinux())
        {
            return new HugePageInfo(TransparentHugePageMode.Unsupported, 0, 0, 0, 0, 0);
        }

        long total2MB = ReadCount($"{SysHugePages}/hugepages-2048kB/nr_hugepages");
        long free2MB = ReadCount($"{SysHugePages}/hugepages-2048kB/free_hugepages");
        long total1GB = ReadCount($"{SysHugePages}/hugepages-1048576kB/nr_hugepages");
        long free1GB = ReadCount($"{SysHugePages}/hugepages-1048576kB/free_hugepages");
        long anonHuge = 0;

        // /proc/meminfo reports only the default hugepage size; use it where sysfs has no 2 MB directory.
        foreach (string line in ReadLines(ProcMeminfo))
        {
            if (TryParseMeminfo(line, "AnonHugePages:", out long kb))
            {
                anonHuge = kb * 1024;
            }
            else if (total2MB < 0 && TryParseMeminfo(line, "HugePages_Total:", out long total))
            {
                total2MB = total;
            }
            else if (free2MB < 0 && TryParseMeminfo(line, "HugePages_Free:", out long free))
            {
                free2MB = free;
            }
        }

        return new HugePageInfo(ReadTransparentMode(), Math.Max(total2MB, 0), Math.Max(free2MB, 0), Math.Max(total1GB, 0), Math.Max(free1GB, 0), anonHuge);
    }

    /// <summary>
    /// Whether reserved hugepages of <paramref name="kind"/> may serve a map of <paramref name="length"/> bytes now: as
    /// many free, or surplus pages allowed (<c>nr_overcommit_hugepages</c>). Read from sysfs at each call, so for the
    /// slow path only (a map past <c>MaxBytesInUse</c>, which trims the pool for it only when this holds). Unreadable
    /// (no sysfs directory for the size, a container that hides it): it may.
    /// </summary>
    internal static bool ReservedPagesMayServe(PageKind kind, long length)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        (string directory, long pageSize) = kind == PageKind.HugeTlb1GB ? ($"{SysHugePages}/hugepages-1048576kB", Size1GB) : ($"{SysHugePages}/hugepages-2048kB", Size2MB);
        long free = ReadCount($"{directory}/free_hugepages");
        long surplus = ReadCount($"{directory}/nr_overcommit_hugepages");
        return free < 0 || free * pageSize >= length || surplus != 0;
    }

    /// <summary>Parses the bracketed choice of a sysfs setting such as <c>always [madvise] never</c>.</summary>
    internal static TransparentHugePageMode ParseTransparentMode(string setting)
    {
        int open = setting.IndexOf('[', StringComparison.Ordinal);
        int close = setting.IndexOf(']', StringComparison.Ordinal);
        if (open < 0 || close <= open)
        {
            return TransparentHugePageMode.Unsupported;
        }

        return setting.AsSpan(open + 1, close - open - 1) switch
        {
            "always" => TransparentHugePageMode.Always,
            "madvise" => TransparentHugePageMode.Madvise,
            "never" => TransparentHugePageMode.Never,
            _ => TransparentHugePageMode.Unsupported,
        };
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"THP {TransparentMode}, 2 MB pages {Free2MBPages}/{Total2MBPages} free, 1 GB pages {Free1GBPages}/{Total1GBPages} free, AnonHugePages {AnonHugePageBytes / 1024} KB";

    private static TransparentHugePageMode ReadTransparentMode()
    {
        string? setting = ReadText(SysTransparentEnabled);
        return setting is null ? TransparentHugePageMode.Unsupported : ParseTransparentMode(setting);
    }

    private static long ReadCount(string path) =>
        long.TryParse(ReadText(path), NumberStyles.Integer, CultureInfo.InvariantCulture, out long value) ? value : -1;

    private static bool TryParseMeminfo(string line, string key, out long value)
    {
        value = 0;
        if (!line.StartsWith(key, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<char> rest = line.AsSpan(key.Length).Trim();
        int space = rest.IndexOf(' ');
        return long.TryParse(space < 0 ? rest : rest[..space], NumberStyles.Integer, CultureInfo.InvariantCulture, out value);
    }

    private static string? ReadText(string path)
    {
        // sysfs files vanish with kernel configuration (no hugetlbfs, no THP) and some are unreadable in
        // containers; both mean "nothing here" for detection.
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string[] ReadLines(string path)
    {
        string? text = ReadText(path);
        return text is null ? [] : text.Split('\n');
    }
}
