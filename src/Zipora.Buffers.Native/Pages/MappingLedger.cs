using System;
using System.Collections.Generic;

namespace Zipora.Buffers.Native;

/// <summary>
/// A check, off unless the <c>Zipora.Buffers.Native.VerifyMappings</c> runtime switch is set, that every <c>munmap</c>,
/// <c>madvise</c> and <c>mprotect</c> the pools issue targets memory they mapped and have not unmapped yet.
/// </summary>
/// <remarks>
/// <para>
/// An unmap or a page drop of a stale range does not fail: the kernel applies it to whatever is mapped there now,
/// which may be another pool's live buffer (its bytes zeroed, or its range unmapped and then mapped again for a
/// second owner). Nothing inside a pool can see that happen, so the test suite runs with this switch on: every live
/// mapping of the process's pools is recorded, and a call on a range that is not wholly inside one stops the
/// process at once with the call's stack, before the call runs.
/// </para>
/// <para>
/// Off, it costs one static read the JIT folds away. On, each mapping call takes one lock: only tests turn it on.
/// </para>
/// </remarks>
internal static class MappingLedger
{
    /// <summary>The runtime switch that turns the check on.</summary>
    public const string SwitchName = "Zipora.Buffers.Native.VerifyMappings";

    /// <summary>The live mappings the check has room for from the start (see <c>s_lengthByStart</c>).</summary>
    public const int Capacity = 1 << 16;

    public static readonly bool IsEnabled = AppContext.TryGetSwitch(SwitchName, out bool enabled) && enabled;

    // A monitor, not a System.Threading.Lock: a contended Lock makes its wait event on the managed heap, and a mapping
    // is recorded right after mmap, where a test running the process out of managed memory would lose it.
    private static readonly object s_lock = new();

    // Live mappings by start address; ranges never overlap. Made with room for far more live mappings than a test has,
    // so recording one right after mmap never allocates: a test that runs the process out of managed memory would
    // otherwise lose the mapping the ledger failed to record (a leak of the check, not of the pools).
    private static readonly SortedList<nuint, nuint> s_lengthByStart = new(IsEnabled ? Capacity : 0);

    /// <summary>Records a range the kernel just mapped; it must not overlap one already recorded.</summary>
    public static void Mapped(nint address, nuint length)
    {
        lock (s_lock)
        {
            int index = FloorIndex((nuint)address + length - 1);
            if (index >= 0 && End(index) > (nuint)address)
            {
                Fail("mmap", address, length, $"the kernel returned a range that overlaps the live mapping at 0x{s_lengthByStart.Keys[index]:x}: something unmapped it behind its owner's back");
            }

            s_lengthByStart.Add((nuint)address, length);
        }
    }

    /// <summary>
    /// Checks a range about to be unmapped, and forgets it (splitting the mapping it was cut from); returns that
    /// mapping's bounds, for <see cref="UnmapRefused"/> to join it again.
    /// </summary>
    public static (nuint Start, nuint End) Unmapping(nint address, nuint length)
    {
        lock (s_lock)
        {
            int index = ContainingIndex(address, length, "munmap");
            nuint start = s_lengthByStart.Keys[index];
            nuint end = End(index);
            s_lengthByStart.RemoveAt(index);
            if (start < (nuint)address)
            {
                s_lengthByStart.Add(start, (nuint)address - start);
            }

            nuint cutEnd = (nuint)address + length;
            if (cutEnd < end)
            {
                s_lengthByStart.Add(cutEnd, end - cutEnd);
            }

            return (start, end);
        }
    }

    /// <summary>
    /// Records that an unmap checked by <see cref="Unmapping"/> was refused: the range is still mapped, and still one
    /// mapping with what is left of the mapping it was cut from (<paramref name="cutFrom"/>), as it is in the kernel,
    /// so that giving the whole back after a refused cut is checked as one unmap.
    /// </summary>
    public static void UnmapRefused(nint address, nuint length, (nuint Start, nuint End) cutFrom)
    {
        lock (s_lock)
        {
            nuint start = (nuint)address;
            nuint end = start + length;
            int before = FloorIndex(start - 1);
            if (start > cutFrom.Start && before >= 0 && End(before) == start && s_lengthByStart.Keys[before] >= cutFrom.Start)
            {
                start = s_lengthByStart.Keys[before];
                s_lengthByStart.RemoveAt(before);
            }

            if (end < cutFrom.End && s_lengthByStart.TryGetValue(end, out nuint afterLength) && end + afterLength <= cutFrom.End)
            {
                _ = s_lengthByStart.Remove(end);
                end += afterLength;
            }

            Mapped((nint)start, end - start);
        }
    }

    /// <summary>Checks a range about to have its pages advised or protected.</summary>
    public static void Touching(nint address, nuint length, string call)
    {
        lock (s_lock)
        {
            _ = ContainingIndex(address, length, call);
        }
    }

    private static int ContainingIndex(nint address, nuint length, string call)
    {
        int index = FloorIndex((nuint)address);
        if (index < 0 || End(index) < (nuint)address + length)
        {
            Fail(call, address, length, "the range is not inside one live mapping of the pools: it was unmapped already, or never mapped");
        }

        return index;
    }

    // The index of the last mapping that starts at or below the address, or -1.
    private static int FloorIndex(nuint address)
    {
        IList<nuint> starts = s_lengthByStart.Keys;
        int low = 0;
        int high = starts.Count - 1;
        while (low <= high)
        {
            int middle = low + ((high - low) / 2);
            if (starts[middle] <= address)
            {
                low = middle + 1;
            }
            else
            {
                high = middle - 1;
            }
        }

        return high;
    }

    private static nuint End(int index) => s_lengthByStart.Keys[index] + s_lengthByStart.Values[index];

    private static void Fail(string call, nint address, nuint length, string why) =>
        Environment.FailFast($"Zipora.Buffers mapping check: {call}(0x{address:x}, {length}) refused, {why}.{Environment.NewLine}{Environment.StackTrace}");
}
