using System;
using System.Threading;

namespace Zipora.Buffers.Native;

/// <summary>
/// Mappings an allocator made and could neither hand out nor unmap: the rest of an over-sized mapping whose ends
/// could not be cut off and which the kernel then refused to unmap whole. Nobody else knows them, so they are kept
/// here and unmapped again whenever the allocator next maps or unmaps, until the kernel takes them.
/// </summary>
/// <remarks>
/// <para>
/// Cutting an end off a mapping, and unmapping a range from the middle of one, split a kernel map entry in two, which
/// fails at <c>vm.max_map_count</c>. A new mapping the kernel merged with a neighbour on each side sits in the middle of
/// one, so giving it back whole can fail exactly when cutting it failed. Its pages were never touched, so it holds
/// address space and a map entry, not memory; but left alone it would be a leak nothing counts, and an entry short
/// for every later mapping.
/// </para>
/// <para>
/// Fixed room, so that a stray is kept without allocating (it is met out of managed memory as well). Room for
/// <see cref="Capacity"/> strays at once; a stray that finds none is counted in <see cref="AbandonedBytes"/>.
/// </para>
/// </remarks>
internal sealed class StrayMappings
{
    /// <summary>Strays kept at once.</summary>
    public const int Capacity = 64;

    // A monitor, not a System.Threading.Lock: a contended Lock makes its wait event on the managed heap.
    private readonly object _lock = new();
    private readonly nint[] _addresses = new nint[Capacity];
    private readonly nuint[] _lengths = new nuint[Capacity];
    private int _count;
    private long _bytes;
    private long _abandonedBytes;

    /// <summary>Bytes of the strays kept now, still mapped and tried again.</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Bytes of strays that found no room: mapped until the process ends, and counted here so they are seen.</summary>
    public long AbandonedBytes => Interlocked.Read(ref _abandonedBytes);

    /// <summary>Whether any stray waits (one read, for the allocator's calls to skip <see cref="TryUnmapAll"/>).</summary>
    public bool IsEmpty => Volatile.Read(ref _count) == 0;

    /// <summary>Keeps a mapping the kernel refused to unmap, to try again later.</summary>
    public void Add(nint address, nuint length)
    {
        lock (_lock)
        {
            if (_count == Capacity)
            {
                Interlocked.Add(ref _abandonedBytes, (long)length);
                return;
            }

            _addresses[_count] = address;
            _lengths[_count] = length;
            Volatile.Write(ref _count, _count + 1);
            Interlocked.Add(ref _bytes, (long)length);
        }
    }

    /// <summary>Tries to unmap every stray with <paramref name="unmap"/>; those the kernel refuses again stay.</summary>
    /// <remarks>Under the lock, so that two threads never unmap one stray (the second call would hit whatever the kernel mapped there since).</remarks>
    public void TryUnmapAll(Func<nint, nuint, bool> unmap)
    {
        lock (_lock)
        {
            int kept = 0;
            int next = 0;
            try
            {
                for (; next < _count; next++)
                {
                    if (unmap(_addresses[next], _lengths[next]))
                    {
                        Interlocked.Add(ref _bytes, -(long)_lengths[next]);
                        continue;
                    }

                    Keep(next, ref kept);
                }
            }
            finally
            {
                // An unmap that threw (out of managed memory) unmapped nothing (PageAllocator.Unmap's contract): that
                // stray and those after it stay.
                for (; next < _count; next++)
                {
                    Keep(next, ref kept);
                }

                Volatile.Write(ref _count, kept);
            }
        }
    }

    private void Keep(int index, ref int kept)
    {
        _addresses[kept] = _addresses[index];
        _lengths[kept] = _lengths[index];
        kept++;
    }
}
