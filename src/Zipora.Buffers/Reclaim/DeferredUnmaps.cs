using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The one way the pool gives a mapping back to the OS. Memory returned less than one idle delay ago may still be
/// written through a stale <c>Span</c> (a caller's bug, or a leaked owner's), and unmapping it would turn that bug
/// into a crash; such a mapping has its pages dropped now and is unmapped once the delay has passed. A mapping the
/// OS refuses to unmap stays mapped and counted, and is tried again at every tick.
/// </summary>
/// <remarks>Only slow paths come here (trims, evictions, the pool's disposal), so one lock is enough.</remarks>
internal sealed class DeferredUnmaps
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a region
    // let go of inside an owner's dispose takes it, where running out of managed memory must not throw (a monitor's
    // contention allocates nothing).
    private readonly object _lock = new();
    private readonly List<Mapping> _waiting = [];

    // Places held for mappings not on the list: reserved by a region as it is mapped, between a Release's two steps,
    // or taken off the list by ReleaseDue and not yet unmapped. The list keeps room for each of them (its capacity >=
    // its count plus this, under the lock), so none that must go on it makes it grow.
    private int _placesHeld;
    private readonly PageSource _pages;
    private readonly IdleClock _clock;
    private long _bytes;
    private long _countedBytes;

    // Set once the pool is disposed: its pinned arrays no longer wait out the delay (see ReleasePinnedArraysFromNowOn).
    private volatile bool _pinnedArraysAtOnce;

    public DeferredUnmaps(PageSource pages, IdleClock clock)
    {
        _pages = pages;
        _clock = clock;
    }

    /// <summary>Called after a mapping starts waiting, so a paused timer (a disposed pool's) ticks again.</summary>
    public Action? Waiting { get; set; }

    /// <summary>Bytes let go of and still mapped: waiting out their delay, or refused by the OS.</summary>
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>
    /// The part of <see cref="Bytes"/> still counted against <c>MaxBytesInUse</c>: pages the pool could not drop (pinned
    /// arrays, locked pages) or whose unmap the OS refused. Named by the refusal of a rent at the cap, where they are
    /// neither in use nor cached, and no release frees them before their delay is over.
    /// </summary>
    public long CountedBytes => Volatile.Read(ref _countedBytes);

    /// <summary>Whether nothing is waiting: no mapping is empty, so no bytes means no mappings.</summary>
    public bool IsEmpty => Bytes == 0;

    /// <summary>
    /// Gives a mapping back whose memory was last returned at tick <paramref name="returnedAt"/> of the idle clock:
    /// unmapped now when that was a full delay ago, otherwise its pages are dropped now (unless
    /// <paramref name="pagesDropped"/>: the idle release dropped them while it was cached) and it is unmapped later.
    /// </summary>
    /// <remarks>
    /// With <c>placeReserved</c> the caller reserved the mapping's place when it was mapped (<see cref="ReservePlace"/>),
    /// and this allocates nothing. A caller under a lock of its own passes <c>wakeLater</c> and calls
    /// <see cref="WakeIfWaiting"/> once it has let go of the lock (see there).
    /// </remarks>
    /// <exception cref="OutOfMemoryException">
    /// No managed memory for the list's room (the place not reserved): thrown before anything was done, so the caller
    /// still holds the mapping.
    /// </exception>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="length">Its length.</param>
    /// <param name="backing">What backs it.</param>
    /// <param name="returnedAt">The tick its memory was last returned at.</param>
    /// <param name="pagesDropped">Whether its pages were dropped already.</param>
    /// <param name="placeReserved">Whether its place on the list was reserved.</param>
    /// <param name="wakeLater">Whether the caller wakes the timer itself.</param>
    /// <param name="reusable">
    /// Whether a new mapping of the same length may take it while it waits (<see cref="TryTakeForReuse"/>): plain memory
    /// with every page accessible (not a diagnostic region with its guard pages).
    /// </param>
    /// <param name="countEvicted">
    /// Called with the length once the memory has really left the process: now when it is unmapped or its pages are
    /// (or were) dropped, or at the unmap when the OS refused the drop (locked pages, <c>mlockall</c>), so that a
    /// tier's <c>BytesEvicted</c> never counts memory still committed. Before, the tiers counted it at the release,
    /// whatever the OS said (LockedMemoryAdviceSafetyTests).
    /// </param>
    /// <param name="listIfThrown">
    /// Whether a mapping whose unmap or page drop threw from the allocator (a custom one's bug, passed on; it did
    /// nothing) goes on the list, counted, on its reserved place, to be unmapped later: for a caller that has let go of
    /// it already (a region). A caller that still holds it on a throw (a slab heap, whose trim keeps the slab as it
    /// was) leaves it unset.
    /// </param>
    /// <param name="callerCountsNow">
    /// Whether the caller counts the memory gone now itself, when this returns true (under its own lock, in one step
    /// with taking it out of what it holds: a tier's statistics read between the two showed it as neither);
    /// <paramref name="countEvicted"/> then serves only for an unmap later.
    /// </param>
    /// <returns>Whether the memory left the process now: unmapped, or its pages dropped (now or before).</returns>
    public bool Release(nint address, nuint length, PageBacking backing, long returnedAt, bool pagesDropped = false, bool placeReserved = false, bool wakeLater = false, bool reusable = false, Action<long>? countEvicted = null, bool listIfThrown = false, bool callerCountsNow = false)
    {
        // Room first: a mapping whose pages went or that the OS refused must find its place on the list.
        if (!placeReserved)
        {
            ReservePlace();
        }

        bool counted = true;
        bool unmapped = false;
        bool answered = false;
        try
        {
            if (_clock.HasWaitedOutDelay(returnedAt) || GoesAtOnce(backing))
            {
                unmapped = _pages.TryUnmap(address, length, backing, counted: true);
            }
            else if (pagesDropped)
            {
                _pages.StopCountingDropped(length);
                counted = false;
            }
            else
            {
                // Reserved hugepages are swapped for base pages rather than dropped: the unmap to come is of base pages.
                counted = !_pages.TryDropPages(address, length, ref backing, out unmapped);
            }

            answered = true;
        }
        finally
        {
            // Before, a region's mapping was lost here: let go of by its tier, never listed, mapped and counted against
            // MaxBytesInUse for the pool's life (FaultSweepSafetyTests). Listed as refused, it is tried at every tick.
            if (!answered && listIfThrown)
            {
                lock (_lock)
                {
                    _placesHeld--;
                    ListUnsynchronized(new Mapping(address, length, backing, returnedAt, Counted: true, reusable, countEvicted));
                }

                // Listed, it waits for a tick as any release does: a disposed pool's paused timer is woken here too (a
                // wake reports what it throws, so the allocator's exception is the one that goes on). Before, the
                // exception left before the wake below, and a late return's region stayed mapped until another late
                // return woke the timer, for the life of the process if none came (LateReturnThatThrowsWakeTests).
                if (!wakeLater)
                {
                    Waiting?.Invoke();
                }
            }
        }

        // Unmapped, or its pages dropped (now or before): gone from resident memory now. Still counted: the OS refused.
        bool goneNow = unmapped || !counted;
        if (goneNow && !callerCountsNow)
        {
            countEvicted?.Invoke((long)length);
        }

        lock (_lock)
        {
            _placesHeld--;
            if (unmapped)
            {
                return goneNow;
            }

            ListUnsynchronized(new Mapping(address, length, backing, returnedAt, counted, reusable, counted ? countEvicted : null));
        }

        // A dispose that set the flag after this release read it drained the list before this array was on it, or past
        // its place: the release lets go of it itself (read after the lock, which the dispose set the flag before taking).
        if (GoesAtOnce(backing))
        {
            Release(pinnedArraysToo: true);
        }

        if (!wakeLater)
        {
            Waiting?.Invoke();
        }

        return goneNow;
    }

    /// <summary>
    /// Wakes a paused timer when something waits: for a caller that released under a lock of its own. A wake of a
    /// paused timer reads the pool's clock, and a clock may run timers as it is read (<c>FakeTimeProvider</c> with
    /// <c>AutoAdvanceAmount</c>): under the caller's lock, one that returned another block of the pool entered it again
    /// halfway through taking a slab out of its list, and the list lost the wrong slab.
    /// </summary>
    public void WakeIfWaiting()
    {
        if (!IsEmpty)
        {
            Waiting?.Invoke();
        }
    }

    /// <summary>
    /// Makes room on the list for a mapping to be released later with its place reserved, so that release allocates
    /// nothing; <see cref="CancelPlace"/> gives the room back when the mapping never comes.
    /// </summary>
    /// <exception cref="OutOfMemoryException">No managed memory for the room: nothing was reserved.</exception>
    public void ReservePlace()
    {
        lock (_lock)
        {
            _waiting.EnsureCapacity(_waiting.Count + _placesHeld + 1);
            _placesHeld++;
        }
    }

    /// <summary>Gives back a place reserved for a mapping that was never made.</summary>
    public void CancelPlace()
    {
        lock (_lock)
        {
            _placesHeld--;
        }
    }

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

    private readonly record struct Mapping(nint Address, nuint Length, PageBacking Backing, long ReturnedAt, bool Counted, bool Reusable, Action<long>? CountEvictedAtUnmap);
}
