using System.Runtime.InteropServices;

namespace Zipora.Buffers.Native;

/// <summary>The virtual memory calls of Windows.</summary>
internal static partial class Kernel32
{
    private const string Library = "kernel32.dll";

    public const uint MemCommit = 0x1000;
    public const uint MemReserve = 0x2000;
    public const uint MemDecommit = 0x4000;
    public const uint MemRelease = 0x8000;
    public const uint MemReset = 0x80000;
    public const uint PageNoAccess = 0x01;
    public const uint PageReadWrite = 0x04;

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint VirtualAlloc(nint address, nuint size, uint allocationType, uint protect);

    [LibraryImport(Library, SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    public static partial bool VirtualFree(nint address, nuint size, uint freeType);

    [LibraryImport(Library, SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    public static partial bool VirtualProtect(nint address, nuint size, uint newProtect, out uint oldProtect);
}
