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

    private static long HugetlbBytes()
    {
        // "HugetlbPages:      2048 kB" in /proc/self/status (Linux 4.4 and later; absent before, then 0).
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("HugetlbPages:", StringComparison.Ordinal))
            {
                string kilobytes = line["HugetlbPages:".Length..].Trim().Split(' ')[0];
                return long.Parse(kilobytes, CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }
}
