using System;

namespace Zipora.Buffers;

/// <summary>
/// The slabs a trim lets go of, given back to the OS after it has let go of the heap's lock: their pages dropped, or
/// unmapped once their delay is over, one system call each, which no rent or statistics read waits for.
/// </summary>
/// <remarks>
/// Before, each was given back under the lock as the trim let go of it: about 10 µs a slab (an madvise and its TLB
/// shootdowns), and a trim of 100,000 cached 4 KB blocks (8,500 slabs) held every rent that had to carve a block, of
/// any class of the tier, and every statistics read, for 60 ms of its 78 (the benchmarks' --trim-stall). Until it is given back, a
/// slab let go of stays in the heap's list and its counts, resident and counted as mapped, but cut from no more and on
/// its way out (<see cref="PageSource.BeginRelease"/>: a rent at <c>MaxBytesInUse</c> waits for it); it is not on the
/// list of mappings that wait out their delay either, so no new mapping takes it before its pages are dropped. Each
/// leaves the heap's counts in one step, under the lock, with its listing and its count as evicted: a statistics read
/// sees it either retained or gone (TrimStatisticsRaceTests).
/// </remarks>
internal sealed partial class SlabHeap
{
    // The slabs let go of by the trim under way and not yet given back, the last let go of first, through their
    // NextLetGo (so a trim of any number allocates nothing). Guarded by the lock.
    private Slab? _letGo;

    /// <summary>
    /// Gives back to the OS every slab the trim let go of (see <see cref="TrimFree"/>), out of the lock; called by the
    /// tier after each trim, with its caches open again, whether the trim returned or threw. Allocates nothing.
    /// </summary>
    /// <remarks>
    /// A slab whose give-back throws (a custom allocator's bug, passed on; it did nothing) is listed as one the OS
    /// refused, counted and unmapped at a tick once its delay is over, and so are those behind it, untried: none is left
    /// let go of and never given back.
    /// </remarks>
    public void GiveBackLetGoSlabs()
    {
        try
        {
            while (TakeLetGo() is { } slab)
            {
                GiveBackLetGo(slab);
            }
        }
        finally
        {
            lock (_lock)
            {
                while (TakeLetGoUnsynchronized() is { } slab)
                {
                    ForgetLetGoUnsynchronized(slab, slab.Backing, unmapped: false, counted: true);
                    _pages.EndRelease(slab.Length);
                }
            }

            _unmaps.WakeIfWaiting();
        }
    }

    /// <summary>
    /// Takes the slab at <paramref name="index"/> out of the tier, all its blocks free, to be given back once the trim
    /// lets go of the lock; the caller holds the lock.
    /// </summary>
    private void LetGoUnsynchronized(int index, long returnedAt)
    {
        Slab slab = _slabs[index];
        TakeOutOfTierUnsynchronized(slab);

        // Never stamped before the slab was made: its mapping may be one taken within its delay, and its class's last
        // use may be older (EmptySlabReuseDelayTests).
        slab.LetGoAt = Math.Max(returnedAt, slab.MappedAt);
        slab.LetGo = true;
        slab.NextLetGo = _letGo;
        _letGo = slab;
        _pages.BeginRelease(slab.Length);
    }

    private Slab? TakeLetGo()
    {
        lock (_lock)
        {
            return TakeLetGoUnsynchronized();
        }
    }

    /// <summary>
    /// Takes the last slab let go of off the list, and out of the heap's list of slabs before it is given back: unmapped,
    /// its range may be mapped again at once by a rent of this heap, whose new slab must find no other at its address.
    /// Its bytes stay counted as the heap's until it is listed (<see cref="ForgetLetGoUnsynchronized"/>). The caller
    /// holds the lock.
    /// </summary>
    private Slab? TakeLetGoUnsynchronized()
    {
        Slab? slab = _letGo;
        if (slab is not null)
        {
            _letGo = slab.NextLetGo;
            slab.NextLetGo = null;
            _slabs.RemoveAt(FindSlabUnsynchronized(slab.Address));
        }

        return slab;
    }

    /// <summary>Drops the pages of a slab let go of, or unmaps it once its delay is over, out of the lock; then lists it and takes it out of the heap.</summary>
    private void GiveBackLetGo(Slab slab)
    {
        PageBacking backing = slab.Backing;
        bool unmapped = false;
        bool counted = true;
        try
        {
            counted = _unmaps.GiveBack(slab.Address, slab.Length, ref backing, slab.LetGoAt, pagesDropped: false, out unmapped);
        }
        finally
        {
            // Also when the allocator threw: listed, still counted, as a refusal is.
            lock (_lock)
            {
                ForgetLetGoUnsynchronized(slab, backing, unmapped, counted);
            }

            _pages.EndRelease(slab.Length);
        }

        _unmaps.ReleaseIfGoesAtOnce(backing);
    }

    /// <summary>
    /// Lists a slab let go of as given back (on the place it reserved when it was mapped: this allocates nothing), and
    /// in the same step counts it evicted if it left the process, and out of the heap's bytes; the caller holds the lock.
    /// </summary>
    private void ForgetLetGoUnsynchronized(Slab slab, PageBacking backing, bool unmapped, bool counted)
    {
        _unmaps.ListGivenBack(slab.Address, slab.Length, backing, slab.LetGoAt, unmapped, counted, reusable: true, _countUnmapped);
        if (unmapped || !counted)
        {
            _countUnmapped((long)slab.Length);
        }

        _reservedBytes -= (long)slab.Length;
        _uncarvedBytes -= slab.UncarvedBytes;
    }
}
