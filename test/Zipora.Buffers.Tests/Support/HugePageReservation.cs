using System;
using System.Globalization;
using System.IO;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>Reserves 2 MB hugepages for a test (root only) and puts the old <c>vm.nr_hugepages</c> back on dispose.</summary>
internal sealed class HugePageReservation : IDisposable
{
    private const string Setting = "/proc/sys/vm/nr_hugepages";
    private readonly long _previous;

    private HugePageReservation(long previous) => _previous = previous;

    /// <summary>Tries to make <paramref name="pages"/> more pages free; returns null with the reason when the machine will not.</summary>
    public static HugePageReservation? TryReserve(int pages, out string reason)
    {
        reason = string.Empty;
        if (!OperatingSystem.IsLinux())
        {
            reason = "hugetlb pages exist only on Linux";
            return null;
        }

        long previous;
        try
        {
            previous = long.Parse(File.ReadAllText(Setting).Trim(), CultureInfo.InvariantCulture);
            long freeBefore = HugePageInfo.Read().Free2MBPages;
            File.WriteAllText(Setting, (previous + pages).ToString(CultureInfo.InvariantCulture));
            var reservation = new HugePageReservation(previous);
            if (HugePageInfo.Read().Free2MBPages < freeBefore + pages)
            {
                reservation.Dispose();
                reason = $"the kernel could not find {pages} free 2 MB pages to reserve";
                return null;
            }

            return reservation;
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            reason = $"cannot raise {Setting} ({error.GetType().Name}: {error.Message}); run as root to test MAP_HUGETLB";
            return null;
        }
    }

    public void Dispose() => File.WriteAllText(Setting, _previous.ToString(CultureInfo.InvariantCulture));

    /// <summary><c>HugePages_Rsvd</c> of <c>/proc/meminfo</c>: pages that mappings reserved and have not faulted in yet.</summary>
    public static long ReservedButNotFaultedPages()
    {
        foreach (string line in File.ReadLines("/proc/meminfo"))
        {
            if (line.StartsWith("HugePages_Rsvd:", StringComparison.Ordinal))
            {
                return long.Parse(line["HugePages_Rsvd:".Length..].Trim(), CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException("/proc/meminfo has no HugePages_Rsvd line");
    }
}
