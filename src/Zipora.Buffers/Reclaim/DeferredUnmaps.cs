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
internal sealed partial class DeferredUnmaps
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
            counted = GiveBack(address, length, ref backing, returnedAt, pagesDropped, out unmapped);
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

        ListGivenBack(address, length, backing, returnedAt, unmapped, counted, reusable, countEvicted);
        if (unmapped)
        {
            return goneNow;
        }

        ReleaseIfGoesAtOnce(backing);
        if (!wakeLater)
        {
            Waiting?.Invoke();
        }

        return goneNow;
    }

    /// <summary>
    /// The first half of <c>Release</c>, for a caller that must not hold its lock over a system call: gives a
    /// mapping back to the OS as <c>Release</c> does (unmapped when its delay is over, otherwise its pages
    /// dropped), touching no list and no lock. The caller then lists it with <see cref="ListGivenBack"/>, on the place
    /// it holds, whatever this answered or threw.
    /// </summary>
    /// <remarks>
    /// Why: a slab tier's trim dropped the pages of every slab it let go of under its heap's lock, a system call each
    /// (about 10 µs with the TLB shootdowns), and every rent that had to carve and every statistics read waited for all
    /// of them: 60 ms of a trim of 100,000 cached 4 KB blocks (the benchmarks' --trim-stall). It now gives the slabs back after.
    /// </remarks>
    /// <param name="address">Start of the mapping.</param>
    /// <param name="length">Its length.</param>
    /// <param name="backing">What backs it; what backs it now, on return (see <see cref="PageSource.TryDropPages"/>).</param>
    /// <param name="returnedAt">The tick its memory was last returned at.</param>
    /// <param name="pagesDropped">Whether its pages were dropped already.</param>
    /// <param name="unmapped">Set when the mapping is gone: unmapped, by this or by the kernel on its way to a refusal.</param>
    /// <returns>Whether it still counts against the limit: not unmapped and its pages not dropped (the OS refused).</returns>
    public bool GiveBack(nint address, nuint length, ref PageBacking backing, long returnedAt, bool pagesDropped, out bool unmapped)
    {
        unmapped = false;
        if (_clock.HasWaitedOutDelay(returnedAt) || GoesAtOnce(backing))
        {
            unmapped = _pages.TryUnmap(address, length, backing, counted: true);
            return !unmapped;
        }

        if (pagesDropped)
        {
            _pages.StopCountingDropped(length);
            return false;
        }

        // Reserved hugepages are swapped for base pages rather than dropped: the unmap to come is of base pages.
        return !_pages.TryDropPages(address, length, ref backing, out unmapped);
    }

    /// <summary>
    /// The second half of <c>Release</c> (see <see cref="GiveBack"/>): lists a mapping given back, on the place
    /// it held, unless it was unmapped; still counted (refused, or its give-back threw), it is unmapped at a tick once its
    /// delay is over and <paramref name="countEvicted"/> is called then. Allocates nothing, and may be called under the
    /// caller's lock. The caller then calls <see cref="ReleaseIfGoesAtOnce"/> and wakes the timer, outside its lock.
    /// </summary>
    public void ListGivenBack(nint address, nuint length, PageBacking backing, long returnedAt, bool unmapped, bool counted, bool reusable, Action<long>? countEvicted)
    {
        lock (_lock)
        {
            _placesHeld--;
            if (!unmapped)
            {
                ListUnsynchronized(new Mapping(address, length, backing, returnedAt, counted, reusable, counted ? countEvicted : null));
            }
        }
    }

    /// <summary>
    /// After a mapping of <paramref name="backing"/> was listed: a dispose that set its flag after the mapping's release
    /// read it drained the list before the mapping was on it, or past its place, so the release lets go of it itself
    /// (read after the list's lock, which the dispose set the flag before taking).
    /// </summary>
    public void ReleaseIfGoesAtOnce(PageBacking backing)
    {
        if (GoesAtOnce(backing))
        {
            Release(pinnedArraysToo: true);
        }
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

    private readonly record struct Mapping(nint Address, nuint Length, PageBacking Backing, long ReturnedAt, bool Counted, bool Reusable, Action<long>? CountEvictedAtUnmap);
}
