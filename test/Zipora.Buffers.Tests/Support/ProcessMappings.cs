using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The process's virtual memory mappings, from <c>/proc/self/maps</c> (Linux only): whether a range of addresses is
/// mapped, so a test can prove memory was (or was not) given back to the OS, and check a range is still writable
/// before it writes through a raw pointer (a failure is then an assertion, never a crashed test host).
/// </summary>
internal static partial class ProcessMappings
{
    private const string MapsPath = "/proc/self/maps";
    private const int MsAsync = 1;

    /// <summary>Whether this process can read its own mappings.</summary>
    public static bool CanRead => OperatingSystem.IsLinux() && File.Exists(MapsPath);

    /// <summary>Whether every byte of [<paramref name="address"/>, <paramref name="address"/> + <paramref name="length"/>) lies in some mapping (adjacent mappings may cover it together).</summary>
    public static bool IsMapped(nint address, long length) => Covers(address, length, requireWritable: false);

    /// <summary>Whether every byte of the range lies in a mapping the process may write.</summary>
    public static bool IsWritable(nint address, long length) => Covers(address, length, requireWritable: true);

    /// <summary>
    /// Whether every page of the range is mapped, by one system call (<c>msync(MS_ASYNC)</c> fails with ENOMEM on an
    /// unmapped page and does nothing else on anonymous memory): cheap enough to check before every write in a storm.
    /// </summary>
    public static bool IsMappedNow(nint address, long length)
    {
        nint page = Environment.SystemPageSize;
        nint start = address & ~(page - 1);
        return msync(start, (nuint)(address + (nint)length - start), MsAsync) == 0;
    }

    /// <summary>
    /// Bytes of writable mappings, summed over <c>/proc/self/maps</c>: what unmapping the pool's memory gives back,
    /// where the count of mappings can stay put (the kernel merges neighbouring anonymous mappings into one line).
    /// Reservations that are not writable (the GC's address space, a new thread's malloc arena) do not count.
    /// </summary>
    public static long WritableBytes()
    {
        long bytes = 0;
        foreach (Mapping mapping in Read())
        {
            bytes += mapping.Writable ? (long)(mapping.End - mapping.Start) : 0;
        }

        return bytes;
    }

    /// <summary>The mappings that touch the range, as text, for assertion messages.</summary>
    public static string Describe(nint address, long length)
    {
        ulong start = (ulong)address;
        ulong end = start + (ulong)length;
        var touching = new List<string>();
        foreach (Mapping mapping in Read())
        {
            if (mapping.Start < end && start < mapping.End)
            {
                touching.Add(string.Create(CultureInfo.InvariantCulture, $"{mapping.Start:x}-{mapping.End:x} {(mapping.Writable ? "rw" : "not writable")}"));
            }
        }

        string range = string.Create(CultureInfo.InvariantCulture, $"[{start:x}, {end:x})");
        return touching.Count == 0 ? $"{range}: no mapping" : $"{range}: {string.Join("; ", touching)}";
    }

    /// <summary>The process's map entries now (the lines of <c>/proc/self/maps</c>).</summary>
    public static int Count() => Read().Count;

    /// <summary>
    /// Whether [<paramref name="address"/>, +<paramref name="length"/>) lies strictly inside one map entry, with more of
    /// the entry on each side: unmapping it splits the entry, which the kernel refuses at <c>vm.max_map_count</c>.
    /// </summary>
    public static bool IsStrictlyInsideOne(nint address, long length)
    {
        ulong start = (ulong)address;
        ulong end = start + (ulong)length;
        foreach (Mapping mapping in Read())
        {
            if (mapping.Start <= start && start < mapping.End)
            {
                return mapping.Start < start && end < mapping.End;
            }
        }

        return false;
    }

    /// <summary>The ranges mapped from files (assemblies, libraries), whose page cache <c>mincore</c> counts as resident.</summary>
    public static List<(ulong Start, ulong End)> FileBackedRanges() =>
        [.. Read().Where(static mapping => mapping.FileBacked).Select(static mapping => (mapping.Start, mapping.End))];

    private static bool Covers(nint address, long length, bool requireWritable)
    {
        ulong start = (ulong)address;
        ulong end = start + (ulong)length;
        var mappings = new List<Mapping>();
        foreach (Mapping mapping in Read())
        {
            if (mapping.End > start && mapping.Start < end && (!requireWritable || mapping.Writable))
            {
                mappings.Add(mapping);
            }
        }

        mappings.Sort(static (left, right) => left.Start.CompareTo(right.Start));
        ulong covered = start;
        foreach (Mapping mapping in mappings)
        {
            if (mapping.Start > covered)
            {
                return false;
            }

            covered = Math.Max(covered, mapping.End);
            if (covered >= end)
            {
                return true;
            }
        }

        return covered >= end;
    }

    private static List<Mapping> Read()
    {
        var mappings = new List<Mapping>();
        foreach (string line in File.ReadAllLines(MapsPath))
        {
            // "7f12a0000000-7f12a0021000 rw-p 00000000 00:00 0   [path]"
            int dash = line.IndexOf('-', StringComparison.Ordinal);
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash <= 0 || space <= dash || line.Length < space + 3)
            {
                continue;
            }

            ulong start = ulong.Parse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong end = ulong.Parse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            bool file = line.Contains('/', StringComparison.Ordinal) && line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries) is { Length: 6 } fields && fields[5].StartsWith('/');
            mappings.Add(new Mapping(start, end, line[space + 2] == 'w', file));
        }

        return mappings;
    }

    /// <summary>
    /// Pages of [<paramref name="address"/>, +<paramref name="length"/>) resident now, from <c>mincore</c> (page-aligned
    /// address, mapped range): what the OS holds of one region, apart from the rest of the process.
    /// </summary>
    public static unsafe int ResidentPages(nint address, long length)
    {
        long pageSize = Environment.SystemPageSize;
        byte[] residency = new byte[(length + pageSize - 1) / pageSize];
        fixed (byte* vector = residency)
        {
            if (mincore(address, (nuint)length, vector) != 0)
            {
                throw new InvalidOperationException($"mincore failed for {Describe(address, length)}: errno {Marshal.GetLastSystemError()}");
            }
        }

        int resident = 0;
        foreach (byte page in residency)
        {
            resident += page & 1;
        }

        return resident;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int mincore(nint address, nuint length, byte* vector);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int msync(nint address, nuint length, int flags);

    private readonly record struct Mapping(ulong Start, ulong End, bool Writable, bool FileBacked);
}
