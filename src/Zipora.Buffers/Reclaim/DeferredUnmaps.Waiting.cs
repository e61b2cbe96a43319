using System;

namespace Zipora.Buffers;

/// <summary>The mappings waiting out their delay: unmapped at the ticks once it is over, or taken for a new mapping of their length.</summary>
internal sealed partial class DeferredUnmaps
{
    /// <summary>Unmaps what has waited out its delay, and retries what the OS refused; called at every tick.</summary>
    /// <remarks>
    /// One mapping at a time, each taken off the list under the lock and unmapped outside it, allocating nothing: out
    /// of managed memory, no mapping can be off the list and not unmapped. A refused one goes back at the end, past
    /// this pass, for the next tick.
    /// </remarks>
    public void ReleaseDue() => Release(pinnedArraysToo: false);

    /// <summary>
    /// Under memory pressure: also lets go, before their delay is over, of pinned arrays (whose pages cannot be dropped),
    /// which otherwise stay resident for a whole delay after a pressure trim let go of them, while the kernel's OOM
    /// killer acts at the limit. Only pinned arrays: a stale <c>Span</c> over one is a reference the GC follows (an
    /// interior pointer), a stale owner or <c>Memory</c> holds its array, and so does a <c>MemoryHandle</c> (its
    /// block), so the array lives on under them and only its memory's reuse by the pool ends; native memory unmapped,
    /// or heap memory freed, under a stale <c>Span</c> would fault or corrupt the heap, so mappings of other memory
    /// that could not drop their pages (locked, or refused) keep waiting out the delay
    /// (PinnedArrayPressureReleaseTests, StalePinnedHandlePressureReleaseTests). A rent refused at <c>MaxBytesInUse</c>
    /// lets go of only what it needs (<see cref="ReleasePinnedArraysUntil"/>).
    /// </summary>
    public void ReleasePinnedArraysNow() => Release(pinnedArraysToo: true);

    /// <summary>
    /// As <see cref="ReleasePinnedArraysNow"/>, but only until <paramref name="enough"/> bytes of them were unmapped: a
    /// rent at <c>MaxBytesInUse</c> lets go of what it needs, and the rest stays for a new mapping of its length to take
    /// back (each array let go of is garbage for the GC, and the next mapping a new array).
    /// </summary>
    public void ReleasePinnedArraysUntil(long enough) => Release(pinnedArraysToo: true, enough);

    /// <summary>
    /// For a disposed pool: lets go of the pinned arrays waiting now, and of those released later (buffers returned
    /// after the dispose) at once. The delay kept them for reuse by a new mapping of their length, which a disposed pool
    /// never makes, and a stale <c>Span</c>, <c>Memory</c> or handle keeps its array alive without it (see
    /// <see cref="ReleasePinnedArraysNow"/>); kept, they stayed resident for a whole delay (ten minutes for some
    /// servers) after the dispose, under memory pressure too, since the watcher trims only live pools.
    /// </summary>
    public void ReleasePinnedArraysFromNowOn()
    {
        _pinnedArraysAtOnce = true;
        Release(pinnedArraysToo: true);
    }

    /// <summary>Puts a mapping on the list and counts its bytes; the caller holds the lock and gives back the place it takes.</summary>
    private void ListUnsynchronized(Mapping mapping)
    {
        _waiting.Add(mapping);
        _bytes += (long)mapping.Length;
        _countedBytes += mapping.Counted ? (long)mapping.Length : 0;
    }

    /// <summary>Whether memory of <paramref name="backing"/> goes without waiting out its delay: a disposed pool's pinned arrays.</summary>
    private bool GoesAtOnce(PageBacking backing) => _pinnedArraysAtOnce && _pages.IsPinnedArray(backing);

    private void Release(bool pinnedArraysToo, long enough = long.MaxValue)
    {
        int below = int.MaxValue;
        long released = 0;
        while (released < enough && TakeDue(pinnedArraysToo, ref below, out Mapping mapping))
        {
            bool unmapped = false;
            try
            {
                unmapped = _pages.TryUnmap(mapping.Address, mapping.Length, mapping.Backing, mapping.Counted);
                if (unmapped)
                {
                    released += (long)mapping.Length;
                    mapping.CountEvictedAtUnmap?.Invoke((long)mapping.Length);
                }
            }
            finally
            {
                // Refused, or the allocator threw (a custom one's bug; out of managed memory is a refusal, see
                // PageSource), which unmapped nothing (PageAllocator.Unmap): the mapping goes back on the list, on the
                // place it held, to be tried again at the next tick. Before, one whose unmap threw was off the list and
                // never unmapped: mapped for the pool's life, counted in BytesAwaitingRelease and against MaxBytesInUse
                // for good (FaultSweepSafetyTests).
                lock (_lock)
                {
                    _placesHeld--;
                    if (unmapped)
                    {
                        _bytes -= (long)mapping.Length;
                        _countedBytes -= mapping.Counted ? (long)mapping.Length : 0;
                    }
                    else
                    {
                        _waiting.Add(mapping);
                    }
                }

                if (mapping.Counted)
                {
                    _pages.EndRelease(mapping.Length);
                }
            }
        }
    }

    /// <summary>
    /// Takes off the list the last mapping due below index <paramref name="below"/> (or, with
    /// <paramref name="pinnedArraysToo"/>, a pinned array's), and lowers it to where that was.
    /// </summary>
    private bool TakeDue(bool pinnedArraysToo, ref int below, out Mapping mapping)
    {
        lock (_lock)
        {
            for (int i = Math.Min(below, _waiting.Count) - 1; i >= 0; i--)
            {
                if ((pinnedArraysToo && _pages.IsPinnedArray(_waiting[i].Backing)) || _clock.HasWaitedOutDelay(_waiting[i].ReturnedAt))
                {
                    // The last mapping takes its slot: looked at already in this pass (or come back refused in it).
                    mapping = _waiting.TakeAt(i);
                    _placesHeld++;
                    below = i;

                    // Off the list and still counted until its unmap: a rent at MaxBytesInUse that finds it neither
                    // here nor gone waits for it. Begun under the lock, so a rent that reads the counted bytes after
                    // this take sees the release under way (PinnedMixedTiersAtTheCapSafetyTests: another thread's
                    // unmap, preempted, left 3 MB counted that no let-go could reach, and the rent was refused).
                    if (mapping.Counted)
                    {
                        _pages.BeginRelease(mapping.Length);
                    }

                    return true;
                }
            }
        }

        mapping = default;
        return false;
    }

    /// <summary>
    /// Takes off the list a waiting mapping that can serve as a new one of <paramref name="length"/> bytes aligned to
    /// <paramref name="alignment"/>: reusable, of exactly that length, on base or transparent hugepages (the OS layer's,
    /// not the portable fallback's), and either still counted against the limit (<paramref name="counted"/>: its pages
    /// could not be dropped, as pinned arrays' cannot, so the caller reserves nothing) or with its pages dropped (the
    /// caller reserved the bytes as for a new mapping). The newest such, whose delay has the longest to run.
    /// </summary>
    /// <remarks>
    /// Why: every trim that lets go of memory returned within the delay leaves its mapping here for the delay, and a pool
    /// held at <c>MaxBytesInUse</c>, or trimmed in a loop, maps anew for every later rent: measured, 114,000 mappings in
    /// 8 s at a 32 MB cap, 34,000 entries in <c>/proc/self/maps</c>, and rents the OS refused at <c>vm.max_map_count</c>,
    /// where the runtime's own next mapping ends the process. Handing a waiting mapping out again keeps the promise the
    /// delay is for: its memory is never unmapped under a stale <c>Span</c>; such a write then lands in the new
    /// renter's memory, as one into a cached block does.
    /// </remarks>
    /// <param name="length">The new mapping's length.</param>
    /// <param name="alignment">Its alignment, a power of two.</param>
    /// <param name="takeAdvised">
    /// Whether one advised for transparent hugepages may be taken: only by a caller that advises its mapping so too
    /// (the huge tier). The advice stays with the range, and another would sit on it uncounted in <c>HugepageBytes</c>.
    /// </param>
    /// <param name="counted">
    /// Whether to take one still counted against the limit. Without these, a pool of pinned arrays at its cap let its
    /// cached blocks go at every refusal, and they counted, unusable, for a whole delay: six pipes through a 4 MB cap
    /// took 142 s instead of 0.15 s.
    /// </param>
    /// <param name="address">The mapping taken.</param>
    /// <param name="backing">What backed it: base pages, or transparent hugepages advised for the huge tier.</param>
    public bool TryTakeForReuse(nuint length, nuint alignment, bool takeAdvised, bool counted, out nint address, out PageBacking backing)
    {
        Mapping taken = default;
        lock (_lock)
        {
            for (int i = _waiting.Count - 1; i >= 0; i--)
            {
                Mapping mapping = _waiting[i];
                if (mapping.Reusable && mapping.Counted == counted && mapping.Length == length && ((nuint)mapping.Address & (alignment - 1)) == 0
                    && (mapping.Backing == PageBacking.Plain || (takeAdvised && mapping.Backing == PageBacking.TransparentHuge)))
                {
                    taken = _waiting.TakeAt(i);
                    _bytes -= (long)length;
                    _countedBytes -= counted ? (long)length : 0;
                    break;
                }
            }
        }

        if (taken.Length == 0)
        {
            address = 0;
            backing = PageBacking.Plain;
            return false;
        }

        // A counted mapping's tier counts it evicted at its unmap, which now never comes; the new owner counts it as its
        // own allocation, so the tiers' allocated minus evicted stays what is mapped.
        taken.CountEvictedAtUnmap?.Invoke((long)length);
        address = taken.Address;
        backing = taken.Backing;
        return true;
    }
}
