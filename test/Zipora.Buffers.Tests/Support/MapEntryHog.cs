using System;
using System.IO;
using System.Linq;
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
    private readonly nint _base;
    private readonly int _pages;
    private readonly nint _page = Environment.SystemPageSize;
    private int _cuts;

    /// <summary>A hog of <paramref name="pages"/> pages: room for that many entries, less two.</summary>
    public MapEntryHog(int pages = 72_000)
    {
        _pages = pages;
        _base = Libc.Mmap(0, (nuint)(pages * _page), Libc.ProtNone, Libc.MapPrivate | Libc.MapAnonymous | MapNoReserve, -1, 0);
        Assert.True(_base != Libc.MapFailed, $"the hog's mapping of {pages} pages was refused: errno {Marshal.GetLastPInvokeError()}");
        Assert.True(Libc.Mprotect(SentinelPage, (nuint)_page, Libc.ProtRead | Libc.ProtWrite) == 0, $"the hog's last page: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Whether the hog can work here: Linux, with its mappings and its limit readable.</summary>
    public static bool CanRun => OperatingSystem.IsLinux() && ProcessMappings.CanRead && File.Exists("/proc/sys/vm/max_map_count");

    /// <summary>The kernel's limit on a process's map entries, <c>vm.max_map_count</c>.</summary>
    public static int MaxMapCount => int.Parse(File.ReadAllText("/proc/sys/vm/max_map_count").Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The lines of <c>/proc/self/maps</c> (allocates: read it away from the limit).</summary>
    public static int EntriesNow() => File.ReadLines("/proc/self/maps").Count();

    /// <summary>Entries the hog holds beyond its own two.</summary>
    public int Cuts => _cuts;

    private nint SentinelPage => _base + ((_pages - 1) * _page);

    /// <summary>
    /// Cuts until the kernel refuses another entry, then undoes <paramref name="left"/> cuts: the process is then
    /// <paramref name="left"/> entries short of the limit, until something else maps. Returns the entries the hog holds.
    /// </summary>
    public int LeaveOnly(int left)
    {
        while (TryCut())
        {
        }

        for (int i = 0; i < left && _cuts > 0; i++)
        {
            Uncut();
        }

        return _cuts;
    }

    /// <summary>Gives back <paramref name="entries"/> entries (all of them with <see cref="int.MaxValue"/>).</summary>
    public void GiveBack(int entries)
    {
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

    private static int ProtectionAfter(int cut) => cut % 2 == 0 ? Libc.ProtNone : Libc.ProtRead;

    public void Dispose()
    {
        if (Libc.Munmap(_base, (nuint)(_pages * _page)) != 0)
        {
            // Unmapping the whole hog splits nothing, so the kernel never refuses it; if it did, the test must hear.
            throw new InvalidOperationException($"the hog's munmap failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }
}
