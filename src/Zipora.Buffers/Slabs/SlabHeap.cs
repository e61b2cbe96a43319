using System;
using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The slabs of one tier (small or medium): maps them, cuts blocks off them one at a time, and after the pool is
/// disposed frees each slab once all of its blocks are back. A slab is given back through <see cref="DeferredUnmaps"/>,
/// so one whose blocks were returned less than an idle delay ago only has its pages dropped until the delay is over.
/// </summary>
/// <remarks>
/// Only the slow paths come here (a cache miss, the pool's disposal), so one lock is enough. New slabs are mapped in
/// <c>SlabHeap.Mapping.cs</c>, trims are in <c>SlabHeap.Trimming.cs</c>.
/// </remarks>
internal sealed partial class SlabHeap
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a return
    // after the pool's disposal takes it inside an owner's dispose, where running out of managed memory must not throw (a
    // monitor's contention allocates nothing).
    private readonly object _lock = new();
    private readonly PageSource _pages;
    private readonly DeferredUnmaps _unmaps;
    private readonly IdleClock _clock;
    private readonly INativeMemoryReleaser _releaser;
    private readonly Action<int, int> _blocksGone;
    private readonly Slab?[] _currentByClass;

    // Slabs mapped by a thread that lost a race to map one for its class (two threads found the class's slab full at
    // once): kept whole and carved once the current one is full, rather than abandoned with all their room uncut.
    private readonly List<Slab> _spareSlabs = [];
    private readonly List<Slab> _slabs = [];
    private long _reservedBytes;
    private long _decommittedBytes;
    private long _allocatedBytes;
    private long _unmappedBytes;

    // Counts a slab gone from the process: at its release, or at its unmap when the OS refused to drop its pages.
    private readonly Action<long> _countUnmapped;
    private long _uncarvedBytes;
    private bool _disposing;

    private readonly SlabSweeper _sweeper;
    private readonly int _classCount;

    // Per size class, as the last trim of the class found them: carved bytes on dropped pages, then free bytes pinned
    // by a live neighbour, then the bytes the tier had rented so far (so statistics can tell how far the first two may
    // have moved since), each a run of _classCount figures. Replaced whole under the lock; the statistics read them
    // under it with the other figures (ReadFigures), the caps' check without it. A trim writes the next figures into
    // the array published before these (_spareFigures) and publishes it: so it allocates none, and a reader without
    // the lock sees a mix of two trims' figures only if it held the array through a whole trim after the one that
    // replaced it (a statistic a trim off for that one read).
    private long[] _figures;
    private long[] _spareFigures;

    /// <param name="pages">Where slabs come from.</param>
    /// <param name="unmaps">Where slabs let go of wait out the idle delay.</param>
    /// <param name="clock">The idle clock, which dates slabs let go of.</param>
    /// <param name="releaser">Takes the blocks back on dispose.</param>
    /// <param name="classCount">How many size classes the slabs are cut for.</param>
    /// <param name="blocksGone">Told, under the heap's lock, how many blocks of which class went with a slab let go of.</param>
    public SlabHeap(PageSource pages, DeferredUnmaps unmaps, IdleClock clock, INativeMemoryReleaser releaser, int classCount, Action<int, int> blocksGone)
    {
        _blocksGone = blocksGone;
        _countUnmapped = length => Interlocked.Add(ref _unmappedBytes, length);
        _pages = pages;
        _unmaps = unmaps;
        _clock = clock;
        _releaser = releaser;
        _currentByClass = new Slab?[classCount];
        _mapsInFlight = new int[classCount];
        _sweeper = new SlabSweeper(pages);
        _classCount = classCount;
        _figures = new long[3 * classCount];
        _spareFigures = new long[3 * classCount];
    }

    /// <summary>Bytes of slabs currently mapped.</summary>
    public long ReservedBytes => Volatile.Read(ref _reservedBytes);

    /// <summary>Bytes of slabs mapped so far.</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocatedBytes);

    /// <summary>Bytes of mapped slabs not yet cut into blocks: the room left in slabs still being carved (never touched, so not resident).</summary>
    public long UncarvedBytes => Volatile.Read(ref _uncarvedBytes);

    /// <summary>Bytes given back to the OS so far: slabs unmapped, and pages dropped under free blocks (each once per drop).</summary>
    public long EvictedBytes => Volatile.Read(ref _unmappedBytes) + Volatile.Read(ref _decommittedBytes);

    /// <summary>
    /// Every figure the tier's statistics need, read together under the heap's lock: a trim unmapping a slab counts it
    /// evicted, then takes it out of the mapped and uncarved bytes, and a figure read on its own between the two counted
    /// the slab twice (TrimStatisticsRaceTests). A read waits for a trim in progress, as a rent that carves does.
    /// </summary>
    public SlabHeapFigures ReadFigures(ReadOnlySpan<long> rentedBytesByClass)
    {
        lock (_lock)
        {
            (long dropped, long fragmented) = NotRetained(rentedBytesByClass);
            return new SlabHeapFigures(ReservedBytes, UncarvedBytes, AllocatedBytes, EvictedBytes, dropped, fragmented);
        }
    }

    /// <summary>
    /// The free bytes that are not retained: on dropped pages, and pinned by a live neighbour (fragmented), as the last
    /// trim of each class found them, less what the tier has rented since (<paramref name="rentedBytesByClass"/>, its
    /// bytes rented so far per class): a rent may have taken a block off either, so the figures never overstate what
    /// is not retained, and are exact while the class is not rented from.
    /// </summary>
    public (long Dropped, long Fragmented) NotRetained(ReadOnlySpan<long> rentedBytesByClass)
    {
        long[] figures = Volatile.Read(ref _figures);
        long dropped = 0;
        long fragmented = 0;
        for (int classIndex = 0; classIndex < _classCount; classIndex++)
        {
            long rentedSince = Math.Max(0, rentedBytesByClass[classIndex] - figures[(2 * _classCount) + classIndex]);
            dropped += Math.Max(0, figures[classIndex] - rentedSince);
            fragmented += Math.Max(0, figures[_classCount + classIndex] - rentedSince);
        }

        return (dropped, fragmented);
    }

    /// <summary>Cuts a fresh block of <paramref name="blockSize"/> bytes, mapping a new slab of <paramref name="slabBytes"/> when the class's slab is full.</summary>
    /// <remarks>Mapping may trim the pool (at its memory limit), so the caller must hold no lock and no thread cache.</remarks>
    /// <exception cref="InsufficientMemoryException">The OS, or the pool's limit, has no room for a new slab.</exception>
    public NativeMemoryManager Carve(int classIndex, int blockSize, int slabBytes, string tierName)
    {
        lock (_lock)
        {
            // A rent inside a trim's page drop, on its thread (the user's page allocator renting): the block would be
            // cut from a page being dropped (a slab's last page goes with its uncarved rest), and lose its bytes to
            // the drop (RentInsideATrimsPageDropSafetyTests). Refused, as at a limit.
            if (_sweeping)
            {
                ThrowHelper.ThrowRentInsidePageDrop(tierName);
            }

            NativeMemoryManager? listed = TryCutListedUnsynchronized(classIndex, blockSize);
            if (listed is not null)
            {
                return listed;
            }

            _mapsInFlight[classIndex]++;
        }

        return MapSlab(classIndex, blockSize, slabBytes, tierName);
    }

    /// <summary>
    /// Cuts the next block of the class's current slab, or of a spare; <see langword="null"/> when neither has room.
    /// The caller holds the lock.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The heap is disposing.</exception>
    private NativeMemoryManager? TryCutListedUnsynchronized(int classIndex, int blockSize)
    {
        if (_disposing)
        {
            ThrowHelper.ThrowPoolDisposed();
        }

        Slab? slab = _currentByClass[classIndex];
        if (slab is null || slab.IsFull)
        {
            slab = TakeSpareUnsynchronized(classIndex);
        }

        if (slab is null)
        {
            return null;
        }

        long uncarved = slab.UncarvedBytes;
        NativeMemoryManager block = CutUnsynchronized(slab, blockSize);
        _uncarvedBytes -= uncarved - slab.UncarvedBytes;
        return block;
    }

    /// <summary>Cuts the slab's next block; the caller holds the lock, and counts the slab's uncarved bytes that went.</summary>
    private NativeMemoryManager CutUnsynchronized(Slab slab, int blockSize)
    {
        // The manager first: out of managed memory, the slab has not counted a block that does not exist (a slab
        // counting one would never look all free again, and never be let go of).
        NativeMemoryManager block = _pages.CreateManager(slab.NextBlockAddress, blockSize, _releaser, slab.Backing);
        slab.ForgetDroppedPages((long)slab.Carved * blockSize, blockSize);
        slab.Carved++;
        return block;
    }

    /// <summary>
    /// The disposing tier's first step: no block is carved from here on, and each slab waits for every block it carved,
    /// those in the tier's caches (<see cref="ReleaseCached"/>) and those rented (<see cref="ReleaseAfterDispose"/>).
    /// Allocates nothing; a dispose retried after one that failed partway changes nothing here.
    /// </summary>
    public void StopCarving()
    {
        lock (_lock)
        {
            if (_disposing)
            {
                return;
            }

            foreach (Slab slab in _slabs)
            {
                slab.Outstanding = slab.Carved;
            }

            Array.Clear(_currentByClass);
            _spareSlabs.Clear();

            // The free blocks are released with their slabs or, in slabs still in use, for good: none is dropped or
            // fragmented from now on. Published as a trim publishes (the spare figures, cleared): no allocation.
            long[] cleared = _spareFigures;
            Array.Clear(cleared);
            _spareFigures = _figures;
            Volatile.Write(ref _figures, cleared);
            _disposing = true;
        }
    }

    /// <summary>
    /// Called by the disposing tier, after <see cref="StopCarving"/>, with the blocks it took out of its caches (a
    /// depot's claimed places, nulled here): releases them and frees the slabs that wait for none. A dispose that
    /// stopped partway calls it again with the blocks it took out then. Allocates nothing.
    /// </summary>
    public void ReleaseCached(Span<NativeMemoryManager> cached)
    {
        lock (_lock)
        {
            for (int i = 0; i < cached.Length; i++)
            {
                if (cached[i] is { } buffer)
                {
                    _ = TryReleaseBlockUnsynchronized(buffer);
                    cached[i] = null!;
                }
            }

            // Slabs with no block rented have nothing to wait for but the delay of their last returns, which are not
            // dated one by one: they count as returned now. A return inside a give-back (see UnmapUnsynchronized) may
            // take a lower slab out of the list too: the index is kept within it, and the slabs below move down.
            for (int i = _slabs.Count - 1; i >= 0; i = Math.Min(i, _slabs.Count) - 1)
            {
                if (_slabs[i].Outstanding == 0)
                {
                    UnmapUnsynchronized(i, _clock.Epoch);
                }
            }
        }

        _unmaps.WakeIfWaiting();
    }

    /// <summary>Takes back a block that was rented when the pool was disposed; frees its slab with the last one.</summary>
    public void ReleaseAfterDispose(NativeMemoryManager buffer)
    {
        lock (_lock)
        {
            int index = TryReleaseBlockUnsynchronized(buffer);
            if (index < 0 || _slabs[index].Outstanding != 0)
            {
                return;
            }

            UnmapUnsynchronized(index, _clock.Epoch);
        }

        // Out of the lock (see DeferredUnmaps.WakeIfWaiting): a late return is what wakes a disposed pool's timer.
        _unmaps.WakeIfWaiting();
    }

    /// <summary>
    /// Releases a block of a disposed heap and returns its slab's index; -1 for a block released already, a copy listed
    /// twice (a caller's racing second dispose put it in two caches), which must not count its slab's wait down twice:
    /// the slab would be unmapped under another of its blocks still rented.
    /// </summary>
    private int TryReleaseBlockUnsynchronized(NativeMemoryManager buffer)
    {
        if (buffer.IsReleased)
        {
            return -1;
        }

        buffer.MarkReleased();
        int index = FindSlabUnsynchronized(buffer.Address);
        _slabs[index].Outstanding--;
        return index;
    }

    /// <summary>Makes a spare slab of the class its current one, if there is a spare; the caller holds the lock.</summary>
    private Slab? TakeSpareUnsynchronized(int classIndex)
    {
        // Spares exist only after a race to map, so the list is short and usually empty.
        for (int i = 0; i < _spareSlabs.Count; i++)
        {
            Slab spare = _spareSlabs[i];
            if (spare.ClassIndex == classIndex)
            {
                _spareSlabs.RemoveAt(i);
                _currentByClass[classIndex] = spare;
                return spare;
            }
        }

        return null;
    }

    /// <summary>
    /// Takes a slab out of the tier and gives it back, its blocks last returned at tick <paramref name="returnedAt"/>;
    /// the caller wakes the timer once out of the lock (<see cref="DeferredUnmaps.WakeIfWaiting"/>). For the disposal's
    /// few slabs: a trim lets go of its many with <see cref="LetGoUnsynchronized"/>, and gives them back out of the lock.
    /// </summary>
    private void UnmapUnsynchronized(int index, long returnedAt)
    {
        // Given back first, on the place the slab reserved when it was mapped: this allocates nothing. Never stamped
        // before the slab was made: its mapping may be one taken within its delay, and its class's last use may be
        // older (EmptySlabReuseDelayTests).
        Slab slab = _slabs[index];
        _unmaps.Release(slab.Address, slab.Length, slab.Backing, Math.Max(returnedAt, slab.MappedAt), placeReserved: true, wakeLater: true, reusable: true, countEvicted: _countUnmapped);

        // Found again: the give-back dropped the slab's pages through the user's page allocator, on this thread, and a
        // block returned there came back into this lock, freed its own slab and took it out of the list. Below this
        // one, it moved this one down: removed at the old index, the slab above went instead, with a block still
        // rented, and this one stayed listed, given back again by the dispose's next look (unmapped twice), and that
        // block's return found no slab (ReturnInsideASlabsPageDropSafetyTests).
        _slabs.RemoveAt(FindSlabUnsynchronized(slab.Address));
        TakeOutOfTierUnsynchronized(slab);
        _reservedBytes -= (long)slab.Length;
        _uncarvedBytes -= slab.UncarvedBytes;
    }

    /// <summary>Cuts no more blocks from <paramref name="slab"/>, and tells the tier its blocks are gone; the caller holds the lock.</summary>
    private void TakeOutOfTierUnsynchronized(Slab slab)
    {
        if (ReferenceEquals(_currentByClass[slab.ClassIndex], slab))
        {
            _currentByClass[slab.ClassIndex] = null;
        }
        else
        {
            // By reference, not List.Remove: that makes the runtime's equality comparer of Slab, a type initializer,
            // and one first run by a dispose at the GC heap limit failed for good (a full run: every later dispose's
            // unmap threw TypeInitializationException).
            for (int i = 0; i < _spareSlabs.Count; i++)
            {
                if (ReferenceEquals(_spareSlabs[i], slab))
                {
                    _spareSlabs.RemoveAt(i);
                    break;
                }
            }
        }

        _blocksGone(slab.ClassIndex, slab.Carved);
    }

    /// <summary>Where a slab starting at <paramref name="address"/> goes in the list sorted by address.</summary>
    /// <remarks>
    /// A search of its own, not List.BinarySearch: that makes the runtime's sort helper of Slab, a type initializer,
    /// which a first slab mapped at the GC heap limit would fail for good (every later slab's mapping would throw).
    /// </remarks>
    private int InsertionIndexUnsynchronized(nint address)
    {
        int low = 0;
        int high = _slabs.Count;
        while (low < high)
        {
            int middle = (low + high) >>> 1;
            if (_slabs[middle].Address < address)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        return low;
    }

    /// <summary>The index of the slab holding <paramref name="address"/>.</summary>
    /// <exception cref="InvalidOperationException">No slab of this heap holds it.</exception>
    private int FindSlabUnsynchronized(nint address)
    {
        // The last slab starting at or below the address, by the search that places new slabs.
        int index = InsertionIndexUnsynchronized(address + 1) - 1;
        return index >= 0 && address < _slabs[index].Address + (nint)_slabs[index].Length
            ? index
            : throw new InvalidOperationException($"Block 0x{address:x} belongs to no slab of this pool.");
    }
}
