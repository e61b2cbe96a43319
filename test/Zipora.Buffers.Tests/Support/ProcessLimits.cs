using System;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Process-local settings that make the kernel itself refuse the pool's calls (Linux, x64): <c>mlockall</c> (a
/// locked page refuses MADV_DONTNEED and MADV_FREE with EINVAL), <c>PR_SET_THP_DISABLE</c> (no transparent hugepage,
/// whatever MADV_HUGEPAGE says), <c>RLIMIT_MEMLOCK</c> with <c>CAP_IPC_LOCK</c> dropped (a new mapping past the limit
/// fails with EAGAIN). Only for tests that run in a process of their own (<see cref="IsolatedProcess"/>): none of it is
/// undone for the rest of the process, except by <see cref="UnlockAll"/>.
/// </summary>
internal static partial class ProcessLimits
{
    private const int MclCurrent = 1;
    private const int MclFuture = 2;
    private const int PrSetThpDisable = 41;
    private const int PrGetThpDisable = 42;
    private const int RlimitMemlock = 8;
    private const int CapIpcLock = 14;
    private const long SysCapget = 125;
    private const long SysCapset = 126;
    private const uint LinuxCapabilityVersion3 = 0x20080522;

    /// <summary>Whether this process can be locked and limited here: Linux on x64 (the capability calls are raw syscalls numbered for x64).</summary>
    public static bool Supported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 && File.Exists("/proc/self/status");

    /// <summary>Locks every page mapped now and every page mapped later (MCL_FUTURE: new mappings are populated at mmap); the errno on failure.</summary>
    public static int LockAll() => mlockall(MclCurrent | MclFuture) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Locks every page mapped later only.</summary>
    public static int LockFuture() => mlockall(MclFuture) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public static void UnlockAll() => Assert.True(munlockall() == 0, $"munlockall failed with errno {Marshal.GetLastPInvokeError()}");

    /// <summary>Turns transparent hugepages off for this process (<c>prctl(PR_SET_THP_DISABLE, 1)</c>); the errno on failure.</summary>
    public static int DisableTransparentHugepages() => prctl(PrSetThpDisable, 1, 0, 0, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public static bool TransparentHugepagesDisabled => prctl(PrGetThpDisable, 0, 0, 0, 0) == 1;

    /// <summary>Lowers the soft limit of RLIMIT_MEMLOCK (the hard one stays, so <see cref="RestoreLockedMemoryLimit"/> can raise it again); the errno on failure.</summary>
    public static int LimitLockedMemory(ulong bytes)
    {
        if (getrlimit(RlimitMemlock, out RLimit limit) != 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        limit.Current = Math.Min(bytes, limit.Maximum);
        return setrlimit(RlimitMemlock, ref limit) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>Raises the soft limit of RLIMIT_MEMLOCK back to the hard one (no privilege needed), so the test runner can finish.</summary>
    public static void RestoreLockedMemoryLimit()
    {
        Assert.True(getrlimit(RlimitMemlock, out RLimit limit) == 0, $"getrlimit failed with errno {Marshal.GetLastPInvokeError()}");
        limit.Current = limit.Maximum;
        Assert.True(setrlimit(RlimitMemlock, ref limit) == 0, $"setrlimit failed with errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>
    /// Drops CAP_IPC_LOCK (which lets root lock past RLIMIT_MEMLOCK) from the calling thread's effective, permitted and
    /// inheritable sets: capabilities are per thread, so only the maps this thread makes meet the limit.
    /// </summary>
    public static unsafe int DropIpcLockOnThisThread()
    {
        CapHeader header = new() { Version = LinuxCapabilityVersion3, Pid = 0 };
        CapData* data = stackalloc CapData[2];
        if (syscall(SysCapget, (nint)(&header), (nint)data) != 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        uint mask = ~(1u << CapIpcLock);
        data[0].Effective &= mask;
        data[0].Permitted &= mask;
        data[0].Inheritable &= mask;
        return syscall(SysCapset, (nint)(&header), (nint)data) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>A figure of <c>/proc/self/status</c> in bytes (<c>VmRSS</c>, <c>RssAnon</c>, <c>VmLck</c>), or <c>THP_enabled</c> as it is.</summary>
    public static long Status(string field) =>
        ProcessMemory.Status(field) ?? throw new InvalidDataException($"/proc/self/status has no {field} line");

    /// <summary>Resident anonymous memory, the memory the pool maps (the runtime's code and files are not in it).</summary>
    public static long RssAnon => Status("RssAnon");

    /// <summary>
    /// The transparent hugepage and resident bytes of every mapping that overlaps [<paramref name="start"/>,
    /// <paramref name="start"/> + <paramref name="length"/>), summed from <c>/proc/self/smaps</c>.
    /// </summary>
    public static (long AnonHuge, long Rss) SmapsOf(nint start, long length)
    {
        ulong from = (ulong)start;
        ulong to = from + (ulong)length;
        bool inside = false;
        long huge = 0;
        long rss = 0;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-', StringComparison.Ordinal);
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong mapStart)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong mapEnd))
            {
                inside = mapStart < to && from < mapEnd;
            }
            else if (inside && line.StartsWith("AnonHugePages:", StringComparison.Ordinal))
            {
                huge += Kilobytes(line) * 1024;
            }
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                rss += Kilobytes(line) * 1024;
            }
        }

        return (huge, rss);
    }

    private static long Kilobytes(string line) => long.Parse(line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CapHeader
    {
        public uint Version;
        public int Pid;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CapData
    {
        public uint Effective;
        public uint Permitted;
        public uint Inheritable;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mlockall(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munlockall();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, out RLimit limit);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setrlimit(int resource, ref RLimit limit);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, nint first, nint second);
}
