using System;
using System.IO;
using System.Runtime.InteropServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Takes this process's memory map entries until it is a chosen number short of <c>vm.max_map_count</c>, without
/// touching the sysctl: one <c>PROT_NONE</c>, <c>MAP_NORESERVE</c> mapping (address space, no memory) cut into entries
/// of a page each by alternating protections. Linux only.
/// </summary>
/// <remarks>
/// <para>
/// Each cut changes the protection of the hog's tail from one page on, which splits the tail's entry in two and nothing
/// else: exactly one more entry, and the kernel's own check (<c>split_vma</c> refuses with ENOMEM once the process holds
/// <c>vm.max_map_count</c> entries). So the hog finds the limit by cutting until the kernel refuses, whatever else
/// the process has mapped, and then gives back a chosen number by undoing cuts (the tail takes its neighbour's
/// protection again and merges with it: one entry fewer, never refused). The hog's last page is writable, a third
/// protection, so that its tail never merges with a mapping above it.
/// </para>
/// <para>
/// Every call here is a system call on memory allocated up front: nothing allocates managed memory, so the hog can
/// move the margin while the process is at the limit (where the GC may fail to commit a new region).
/// </para>
/// </remarks>
internal sealed class MapEntryHog : IDisposable
{
    private const int MapNoReserve = 0x4000;
    private const int ENOMEM = 12;
    private const int ProtExec = 4;
    private readonly nint _base;
    private readonly int _pages;
    private readonly nint _page = Environment.SystemPageSize;
    private int _cuts;
    private nint _beyond;

    /// <summary>The most entries a hog is made to take: a limit raised above it (some distributions set 2^31) is skipped.</summary>
    public const int MostEntries = 1 << 20;

    /// <summary>A hog with room for every entry the limit allows and some to spare.</summary>
    public MapEntryHog()
        : this(MaxMapCount + 2_000)
    {
    }

    /// <summary>A hog of <paramref name="pages"/> pages: room for that many entries, less two.</summary>
    public MapEntryHog(int pages)
    {
        _pages = pages;
        _base = Libc.Mmap(0, (nuint)(pages * _page), Libc.ProtNone, Libc.MapPrivate | Libc.MapAnonymous | MapNoReserve, -1, 0);
        Assert.True(_base != Libc.MapFailed, $"the hog's mapping of {pages} pages was refused: errno {Marshal.GetLastPInvokeError()}");
        Assert.True(Libc.Mprotect(SentinelPage, (nuint)_page, Libc.ProtRead | Libc.ProtWrite) == 0, $"the hog's last page: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Whether the hog can work here: Linux, with its mappings and its limit readable.</summary>
    /// <remarks>The limit must be at most <see cref="MostEntries"/>: cutting a page at a time up to a far higher one would take minutes.</remarks>
    public static bool CanRun => OperatingSystem.IsLinux() && ProcessMappings.CanRead && File.Exists("/proc/sys/vm/max_map_count") && MaxMapCount <= MostEntries;

    /// <summary>The kernel's limit on a process's map entries, <c>vm.max_map_count</c>.</summary>
    public static int MaxMapCount => int.Parse(File.ReadAllText("/proc/sys/vm/max_map_count").Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The process's map entries now (allocates: read it away from the limit).</summary>
    public static int EntriesNow() => ProcessMappings.Count();

    /// <summary>Entries the hog holds beyond its own two.</summary>
    public int Cuts => _cuts;

    private nint SentinelPage => _base + ((_pages - 1) * _page);

    /// <summary>
    /// Cuts until the kernel refuses another entry, then undoes <paramref name="left"/> cuts: the process is then
    /// <paramref name="left"/> entries short of the limit, until something else maps. Returns the entries the hog holds.
    /// </summary>
    /// <remarks>
    /// At the limit the kernel still makes one mapping (<c>mmap</c> refuses only above it, where a split refuses at
    /// it): <paramref name="left"/> = -1 makes that one too, a page no neighbour merges with, so that every
    /// <c>mmap</c> is refused, merged or not.
    /// </remarks>
    public int LeaveOnly(int left)
    {
        ReleaseBeyond();
        CutToTheLimit();
        if (left < 0)
        {
            return PastTheLimit();
        }

        for (int i = 0; i < left && _cuts > 0; i++)
        {
            Uncut();
        }

        return _cuts;
    }

    /// <summary>
    /// Maps the one page the kernel allows at the limit and checks that it refuses the next. Another thread of the
    /// process may free an entry between the cuts and the check (a thread pool thread that exits unmaps its stack, seen
    /// in a CI run as a second mapping the kernel allowed): then the hog cuts again, a few times at most.
    /// </summary>
    private int PastTheLimit()
    {
        const int Attempts = 10;
        for (int attempt = 0; attempt < Attempts; attempt++)
        {
            _beyond = Libc.Mmap(0, (nuint)_page, Libc.ProtRead | ProtExec, Libc.MapPrivate | Libc.MapAnonymous | MapNoReserve, -1, 0);
            Assert.True(_beyond != Libc.MapFailed, $"the kernel refused the one mapping it allows at the limit: errno {Marshal.GetLastPInvokeError()}");
            nint another = Libc.Mmap(0, (nuint)_page, Libc.ProtRead | ProtExec, Libc.MapPrivate | Libc.MapAnonymous | MapNoReserve, -1, 0);
            if (another == Libc.MapFailed)
            {
                return _cuts + 1;
            }

            Assert.True(Libc.Munmap(another, (nuint)_page) == 0, $"unmapping a page the kernel allowed past the limit: errno {Marshal.GetLastPInvokeError()}");
            ReleaseBeyond();
            CutToTheLimit();
        }

        throw new InvalidOperationException($"past the limit the kernel should refuse any mapping, but allowed one in each of {Attempts} attempts");
    }

    private void CutToTheLimit()
    {
        while (TryCut())
        {
        }
    }

    /// <summary>
    /// Runs <paramref name="call"/> with the process <paramref name="margin"/> entries short of the limit (see
    /// <see cref="LeaveOnly"/>), then gives <see cref="Headroom"/> entries back: only the pool's call runs at the
    /// limit, not the test's checks, its messages and the runtime's work between them (the runtime itself ends the
    /// process when it cannot commit a page for its own use, seen as a fatal "Out of memory." and an uncaught
    /// PAL_SEHException on a thread-pool worker).
    /// </summary>
    public void AtMargin(int margin, Action call)
    {
        LeaveOnly(margin);
        try
        {
            call();
        }
        finally
        {
            GiveBack(Headroom);
        }
    }

    /// <summary>Entries left free between calls made <see cref="AtMargin"/>.</summary>
    public const int Headroom = 500;

    /// <summary>Gives back <paramref name="entries"/> entries (all of them with <see cref="int.MaxValue"/>).</summary>
    public void GiveBack(int entries)
    {
        ReleaseBeyond();
        for (int i = 0; i < entries && _cuts > 0; i++)
        {
            Uncut();
        }
    }

    /// <summary>One entry more, or <see langword="false"/> when the kernel refuses it for want of one.</summary>
    private bool TryCut()
    {
        int at = _cuts + 1;
        Assert.True(at < _pages - 2, $"the hog's {_pages} pages were cut up before the process reached its limit");
        int error = Protect(at, ProtectionAfter(at));
        if (error == 0)
        {
            _cuts = at;
            return true;
        }

        Assert.True(error == ENOMEM, $"cutting the hog at page {at} failed with errno {error}, not ENOMEM");
        return false;
    }

    private void Uncut()
    {
        int error = Protect(_cuts, ProtectionAfter(_cuts - 1));
        Assert.True(error == 0, $"undoing the hog's cut at page {_cuts} failed with errno {error}: a merge needs no entry");
        _cuts--;
    }

    /// <summary>The protection from page <paramref name="at"/> to the hog's last page; 0 for none.</summary>
    private int Protect(int at, int protection)
    {
        nint from = _base + (at * _page);
        return Libc.Mprotect(from, (nuint)(SentinelPage - from), protection) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    private void ReleaseBeyond()
    {
        if (_beyond != 0)
        {
            Assert.True(Libc.Munmap(_beyond, (nuint)_page) == 0, $"unmapping the page past the limit: errno {Marshal.GetLastPInvokeError()}");
            _beyond = 0;
        }
    }

    private static int ProtectionAfter(int cut) => cut % 2 == 0 ? Libc.ProtNone : Libc.ProtRead;

    public void Dispose()
    {
        ReleaseBeyond();
        if (Libc.Munmap(_base, (nuint)(_pages * _page)) != 0)
        {
            // Unmapping the whole hog splits nothing, so the kernel never refuses it; if it did, the test must hear.
            throw new InvalidOperationException($"the hog's munmap failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }
}
