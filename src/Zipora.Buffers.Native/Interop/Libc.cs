using System;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Native;

/// <summary>The few libc calls the Unix page layer needs, with the constants of the running OS.</summary>
internal static partial class Libc
{
    private const string Library = "libc";

    public const int ProtNone = 0;
    public const int ProtRead = 1;
    public const int ProtWrite = 2;
    public const int MapPrivate = 0x02;

    // Linux values: MAP_FIXED replaces whatever is mapped at the address; MAP_FIXED_NOREPLACE (4.17) fails instead.
    public const int MapFixed = 0x10;
    public const int MapFixedNoReplace = 0x100000;

    // Linux values (identical on x64 and arm64); macOS and the BSDs differ where noted.
    public static readonly int MapAnonymous = OperatingSystem.IsLinux() ? 0x20 : 0x1000;
    public const int MapHugeTlb = 0x40000;
    private const int MapHugeShift = 26;
    public const int MapHuge2MB = 21 << MapHugeShift;
    public const int MapHuge1GB = 30 << MapHugeShift;

    public const int MadvNormal = 0;
    public const int MadvDontNeed = 4;
    public static readonly int MadvFree = OperatingSystem.IsLinux() ? 8 : 5;
    public const int MadvHugePage = 14;
    public const int MadvNoHugePage = 15;

    // Linux 5.14: faults the range in writable now, and reports a fault that would fail (a SIGBUS at first touch) as an error.
    public const int MadvPopulateWrite = 23;

    public const int Einval = 22;

    public static readonly nint MapFailed = -1;

    public const int PrGetThpDisable = 42;
    public const int PrThpDisableExceptAdvised = 1 << 1;

    [LibraryImport(Library, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport(Library, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);

    [LibraryImport(Library, EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint address, nuint length, int advice);

    // Residency of the pages of a range, one byte per page (bit 0 set: resident); here only ever one page.
    [LibraryImport(Library, EntryPoint = "mincore", SetLastError = true)]
    public static partial int Mincore(nint address, nuint length, out byte residency);

    [LibraryImport(Library, EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint address, nuint length, int protection);

    [LibraryImport(Library, EntryPoint = "prctl", SetLastError = true)]
    public static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);
}
