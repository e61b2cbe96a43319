using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// A slab heap's mappings: a slab mapped for a rent outside the lock and listed with that rent's block cut, and the
/// renters whose mapping was refused (at the pool's cap), which wait for the class's other mappings under way and cut
/// from their slabs.
/// </summary>
internal sealed partial class SlabHeap
{
    // Per class, the slabs being mapped for it (outside the lock, until listed or given up), and how many renters
    // refused a mapping wait for them: a mapping refused at the pool's cap may be refused for the room another
    // renter's mapping of the same class took, whose slab then serves it (FreshClassesAtTheCapSafetyTests).
    private readonly int[] _mapsInFlight;
    private int _waitingForMaps;

    /// <summary>
    /// Maps a slab for the class and adds it with its first block cut, for the caller: listed with nothing cut, a trim
    /// meanwhile would find it all free and let it go before the caller came back for its block (which then mapped
    /// again, and at the pool's cap two renters could trim each other's fresh slabs until one was refused;
    /// FreshSlabTrimRaceSafetyTests). The slab's place on the list of mappings that wait out their delay is taken
    /// first (so letting it go allocates nothing: a return after the pool's disposal lets its slab go inside an
    /// owner's dispose). Out of managed memory for the slab's objects, the mapping goes back on that place (nothing
    /// was ever in it), where an unmap the OS refuses is tried again.
    /// </summary>
    private NativeMemoryManager MapSlab(int classIndex, int blockSize, int slabBytes, string tierName)
    {
        try
        {
            _unmaps.ReservePlace();
        }
        catch
        {
            EndMap(classIndex);
            throw;
        }

        nint address;
        PageBacking backing;
        bool mapped;
        long limitRefusals = _pages.LimitRefusals;
        try
        {
            // Map outside the lock: the page source may trim the pool to stay under its limit, and the trim takes
            // this lock. Two threads may both map a slab for the class; the one that comes second is kept as a spare.
            mapped = _pages.TryMapPlain((nuint)slabBytes, PageAllocator.PageSize, out address, out backing);
        }
        catch
        {
            _unmaps.CancelPlace();
            EndMap(classIndex);
            throw;
        }

        if (!mapped)
        {
            // Refused (at the pool's cap, say): another renter of the class may be mapping a slab, the one whose
            // mapping took the room this one asked for. Its room serves this rent: refused, the rent would fail with a
            // slab of its class all but uncut (FreshClassesAtTheCapSafetyTests).
            _unmaps.CancelPlace();
            NativeMemoryManager? listed = CutAfterRefusal(classIndex, blockSize);
            if (listed is null)
            {
                ThrowHelper.ThrowOutOfMemory(slabBytes, tierName, _pages, limitRefusals);
            }

            return listed;
        }

        NativeMemoryManager? first;
        try
        {
            first = AddSlab(classIndex, address, (nuint)slabBytes, blockSize, backing);
        }
        catch (OutOfMemoryException)
        {
            // Stamped now, not never returned: the mapping may be one let go of within its delay and taken again
            // (DeferredUnmaps.TryTakeForReuse), which a stale Span of its old holder may still write to.
            _unmaps.Release(address, (nuint)slabBytes, backing, _clock.Epoch, placeReserved: true);
            throw;
        }

        // Outside the handler: the exception's own allocation may run out of memory, and the slab is given back already.
        if (first is null)
        {
            _unmaps.WakeIfWaiting();
            ThrowHelper.ThrowPoolDisposed();
        }

        return first;
    }

    /// <summary>Counts a mapping for the class as over (listed or given up), waking renters that wait for it; the caller holds the lock.</summary>
    private void EndMapUnsynchronized(int classIndex)
    {
        _mapsInFlight[classIndex]--;
        if (_waitingForMaps != 0)
        {
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Counts a mapping for the class as given up, taking the lock.</summary>
    private void EndMap(int classIndex)
    {
        lock (_lock)
        {
            EndMapUnsynchronized(classIndex);
        }
    }

    /// <summary>
    /// After this renter's mapping was refused: waits for the other mappings of the class under way, then cuts from
    /// the class's slabs if one of them (or any slab listed meanwhile) has room; <see langword="null"/> when none has.
    /// </summary>
    private NativeMemoryManager? CutAfterRefusal(int classIndex, int blockSize)
    {
        lock (_lock)
        {
            EndMapUnsynchronized(classIndex);
            _waitingForMaps++;
            try
            {
                // Each mapping under way ends under this lock (listed, given back, or refused itself), so this waits
                // for nothing that waits for it: a renter counts its own mapping as over before it waits.
                while (_mapsInFlight[classIndex] != 0 && !_disposing)
                {
                    _ = Monitor.Wait(_lock);
                }
            }
            finally
            {
                _waitingForMaps--;
            }

            return TryCutListedUnsynchronized(classIndex, blockSize);
        }
    }

    /// <summary>
    /// Adds a slab just mapped, on the place reserved for it, and returns its first block; gives it back instead and
    /// returns null when the heap is disposing.
    /// </summary>
    private NativeMemoryManager? AddSlab(int classIndex, nint address, nuint length, int blockSize, PageBacking backing)
    {
        lock (_lock)
        {
            // The mapping is over whatever comes next (listed, given back, or out of managed memory for the slab).
            EndMapUnsynchronized(classIndex);
            if (_disposing)
            {
                // Disposed while mapping: the slab was never used, but its mapping may be one let go of within its delay
                // and taken again (DeferredUnmaps.TryTakeForReuse), which a stale Span of its old holder may still
                // write to; so it waits out a delay from now, as memory let go of does (ReusedMappingDisposalRaceTests).
                _unmaps.Release(address, length, backing, _clock.Epoch, placeReserved: true, wakeLater: true);
                return null;
            }

            var slab = new Slab(classIndex, address, length, blockSize, backing);

            // Room in both lists and the first block first: out of managed memory, the slab is in neither list and
            // has no block (the caller unmaps it).
            _slabs.EnsureCapacity(_slabs.Count + 1);
            _spareSlabs.EnsureCapacity(_spareSlabs.Count + 1);
            NativeMemoryManager first = CutUnsynchronized(slab, slab.BlockSize);

            // Kept sorted by address so a block's slab is a binary search away.
            int index = InsertionIndexUnsynchronized(slab.Address);
            slab.MappedAt = _clock.Epoch;
            _slabs.Insert(index, slab);
            _reservedBytes += (long)slab.Length;
            _allocatedBytes += (long)slab.Length;
            _uncarvedBytes += slab.UncarvedBytes;
            Slab? current = _currentByClass[slab.ClassIndex];
            if (current is null || current.IsFull)
            {
                _currentByClass[slab.ClassIndex] = slab;
            }
            else
            {
                _spareSlabs.Add(slab);
            }

            return first;
        }
    }
}
