using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>The process's resident memory, from <c>/proc/self/statm</c> (the same count as <c>VmRSS</c> in <c>/proc/self/status</c>) and its hugetlb pages.</summary>
internal static class ProcessMemory
{
    public static bool CanRead => File.Exists("/proc/self/statm");

    /// <summary>
    /// The process's resident memory: its resident pages, plus the hugetlb pages it maps, which the kernel keeps out of
    /// the resident count. Without them a huge buffer on reserved hugepages (MAP_HUGETLB, when the machine has any
    /// free) would look as if it were not resident at all.
    /// </summary>
    public static long ResidentBytes()
    {
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return (long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize) + HugetlbBytes();
    }

    /// <summary>
    /// Resident memory once it has stopped falling: after a collection the runtime hands freed regions back to the OS a
    /// step at a time, and a baseline read before that is over counts memory the next allocations would simply reuse.
    /// Waits until two reads 100 ms apart differ by less than 4 MB, for 5 s at most.
    /// </summary>
    public static long SettledResidentBytes()
    {
        long resident = ResidentBytes();
        for (int wait = 0; wait < 50; wait++)
        {
            System.Threading.Thread.Sleep(100);
            long now = ResidentBytes();
            if (Math.Abs(resident - now) < 4 * 1024 * 1024)
            {
                return Math.Min(resident, now);
            }

            resident = now;
        }

        return resident;
    }

    /// <summary>
    /// A figure of <c>/proc/self/status</c>: in bytes where the kernel gives kB (<c>VmRSS</c>, <c>RssAnon</c>,
    /// <c>HugetlbPages</c>), else as it is (<c>THP_enabled</c>); null when this kernel has no such line.
    /// </summary>
    public static long? Status(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal) && line.Length > field.Length && line[field.Length] == ':')
            {
                string[] parts = line[(field.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                long value = long.Parse(parts[0], CultureInfo.InvariantCulture);
                return parts.Length > 1 && parts[1] == "kB" ? value * 1024 : value;
            }
        }

        return null;
    }

    // "HugetlbPages:      2048 kB" (Linux 4.4 and later; absent before, then 0).
    private static long HugetlbBytes() => Status("HugetlbPages") ?? 0;
}
