using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>: bytes are counted before they are mapped, and a mapping that
/// would cross the limit first has the pool trimmed, then waits for the memory already on its way out.
/// </summary>
internal sealed partial class PageSource
{
    // A rent at the limit waits at most this long for releases under way: each is a system call or two, and one that
    // never ends (a thread stopped in a debugger, say) must not hang every rent at the limit with it.
    private const long MostWaitForReleasesMilliseconds = 1_000;

    // Trims a rent at the limit runs at most, each after the pool was used during the one before.
    private const int MostTrimsPerRefusal = 3;

    // Bytes of the mappings taken out of a tier's cache or off the list of unmaps and not yet given back (see BeginRelease).
    private long _bytesUnderWay;
    private long _limitRefusals;
    private long _rentsRefused;

    /// <summary>
    /// Mappings the limit has refused so far. A rent that fails reads it before and after to say whether the limit or
    /// the OS refused it: the limit read again at the throw may have room by then (memory returned meanwhile), and a
    /// refusal of the limit's read as the OS's (MixedTiersAtTheCapSafetyTests, once in 20 runs).
    /// </summary>
    public long LimitRefusals => Volatile.Read(ref _limitRefusals);

    /// <summary>Rents of the pool refused so far (<see cref="System.InsufficientMemoryException"/>), at the limit or by the OS.</summary>
    public long RentsRefused => Volatile.Read(ref _rentsRefused);

    /// <summary>
    /// Counts a refused rent, where the refusal leaves its tier for the caller: a slab tier that meets a refused slab
    /// may still serve the rent from blocks other threads freed meanwhile, so the throw of a refusal is not the count.
    /// </summary>
    public void CountRefusedRent() => Interlocked.Increment(ref _rentsRefused);

    /// <summary>
    /// A test's way into the refusal of the limit, after its last count and before the caller acts on it, where room
    /// another thread gives back may land (a refused mapping must not then be served by the fallback, see
    /// <c>TryMapPlain</c>). Null in use: it costs a read on the path of a refusal, after its trims.
    /// </summary>
    internal Action? AfterLimitRefusal { get; set; }

    /// <summary>
    /// Counts a mapping as on its way out: taken out of a tier's cache, under the tier's lock, to be given back outside
    /// it (an eviction on a return, an idle tick). It is still counted against the limit, and a trim can no longer
    /// reach it: a rent at the limit whose trim ran meanwhile found nothing to free and was refused, though the room
    /// was coming (RegionReleaseAtTheCapSafetyTests). Such a rent now waits for it. Every call is matched by one of
    /// <see cref="EndRelease"/>, once the mapping is unmapped, its pages dropped, or the OS refused both.
    /// </summary>
    /// <param name="length">The mapping's length, counted against the limit.</param>
    public void BeginRelease(nuint length) => Interlocked.Add(ref _bytesUnderWay, (long)length);

    /// <summary>Ends what <see cref="BeginRelease"/> began, for the same length.</summary>
    public void EndRelease(nuint length) => Interlocked.Add(ref _bytesUnderWay, -(long)length);

    /// <summary>
    /// Counts <paramref name="length"/> bytes as mapped if the limit allows; when it does not, trims the pool and waits
    /// for the mappings then on their way out, and trims again (a few times at most) while the pool was used meanwhile.
    /// </summary>
    private bool TryReserve(nuint length)
    {
        if (TryReserveAsItStands(length))
        {
            return true;
        }

        // One wait for all the trims: a release that never ends holds the rent a second, not a second per trim.
        long giveUpAt = 0;
        for (int trims = 1; ; trims++)
        {
            bool trimmed = ReleaseIdleMemory?.Invoke() ?? false;
            if (TryCountUnderLimit(length) || TryCountAfterLettingGoOfPinnedArrays(length) || TryCountAfterReleasesUnderWay(length, ref giveUpAt))
            {
                return true;
            }

            // The trim walks the tiers one after another, and memory returned to a tier it had passed (a block to a
            // thread's cache, a region to a slot) waited there, counted, while this rent was refused: with four threads
            // renting and returning at the cap, 1 to 3 rents of 15 runs (MixedTiersAtTheCapSafetyTests). The pool was
            // used during the trim, so trim again: the next trim rests when it was not (see LimitTrim).
            if (!trimmed || trims == MostTrimsPerRefusal)
            {
                break;
            }
        }

        Interlocked.Increment(ref _limitRefusals);
        AfterLimitRefusal?.Invoke();
        return false;
    }

    /// <summary>
    /// Counts <paramref name="length"/> bytes of reserved hugepages of <paramref name="kind"/> as mapped: the huge tier
    /// tries them first at a length rounded up to their size, with base pages of its own length after. Where the limit
    /// has no room for them as it stands, the pool is trimmed for them only if the machine has such pages to give: in the
    /// usual case (<c>vm.nr_hugepages</c> 0) the attempt fails anyway, and its reservation trimmed the whole pool, waited
    /// for the releases under way and counted a refusal of the limit, for a rent the base pages then served within it
    /// (HugepageAttemptAtTheCapTests: a cached region given back for nothing). The base pages' own reservation trims if
    /// it must.
    /// </summary>
    private bool TryReserveForReservedPages(nuint length, PageKind kind) =>
        TryReserveAsItStands(length) || (ReservedPagesMayServe(kind, length) && TryReserve(length));

    /// <summary>Counts <paramref name="length"/> bytes as mapped if there is no limit or it has room for them now, with no trim.</summary>
    private bool TryReserveAsItStands(nuint length)
    {
        if (_limit == 0)
        {
            Interlocked.Add(ref _mappedBytes, (long)length);
            return true;
        }

        return TryCountUnderLimit(length);
    }

    /// <summary>Whether the machine has reserved hugepages for the map; one that cannot be read for want of managed memory may.</summary>
    private static bool ReservedPagesMayServe(PageKind kind, nuint length)
    {
        try
        {
            return HugePageInfo.ReservedPagesMayServe(kind, (long)length);
        }
        catch (OutOfMemoryException)
        {
            // Reading sysfs allocates: at the GC heap limit, try as before (the trim, then the map, which tells).
            return true;
        }
    }

    /// <summary>
    /// Tries again as the releases under way end, while they could still leave room, until they do. Read after the
    /// trim: a release begun before it, under a tier's lock, is seen here, as the trim took that lock after it.
    /// </summary>
    private bool TryCountAfterReleasesUnderWay(nuint length, ref long giveUpAt)
    {
        var spin = new SpinWait();
        while (ReleasesUnderWayCouldMakeRoom(length))
        {
            spin.SpinOnce();
            if (TryCountUnderLimit(length))
            {
                return true;
            }

            long now = Environment.TickCount64;
            giveUpAt = giveUpAt == 0 ? now + MostWaitForReleasesMilliseconds : giveUpAt;
            if (now >= giveUpAt)
            {
                return false;
            }
        }

        // The last one ended between the try above and the read: its room is counted by now (a pinned array's once
        // it is let go of: a release under way puts one on the list of unmaps, still counted).
        return TryCountAfterLettingGoOfPinnedArrays(length);
    }

    /// <summary>
    /// Lets go now of the pinned arrays waiting out their delay, still counted against the limit, then tries again.
    /// </summary>
    /// <remarks>
    /// Their pages cannot be dropped, so a trim at the limit that let them go freed nothing until their unmap a whole
    /// delay later, and every rent of another length was refused meanwhile, with nothing in use: six pipes moving 2 MB
    /// each through a 4 MB cap stood 12.9 s, a million refusals, waiting out the 10 s delay. The delay keeps native
    /// memory mapped under a stale <c>Span</c>; a pinned array needs no such wait, since a stale <c>Span</c>,
    /// <c>Memory</c> or handle holds the array itself, which the GC keeps alive under it (the reason memory pressure
    /// lets them go at once, see <see cref="DeferredUnmaps.ReleasePinnedArraysNow"/>). Unmapped, it never comes back
    /// to the pool, so no block goes to two owners. Memory of other kinds (locked pages, refused unmaps) still waits.
    /// </remarks>
    private bool TryCountAfterLettingGoOfPinnedArrays(nuint length)
    {
        // Only when that makes room for this rent, and only what it needs: each array let go of is garbage the next new
        // mapping replaces, and rents at the cap beside a pool renting, returning and trimming in a loop set off 580
        // gen2 collections in 2 s letting go of every waiting array, those other rents would have taken back too. (A
        // pinned pool has no fallback, and the GC's arrays are never refused an unmap: all it counts waiting is them.)
        long needed = MappedBytes + (long)length - _limit;
        if (WaitingUnmaps is { CountedBytes: > 0 } waiting && IsPinnedArray(PageBacking.Plain) && needed <= waiting.CountedBytes)
        {
            waiting.ReleasePinnedArraysUntil(needed);
        }

        return TryCountUnderLimit(length);
    }

    /// <summary>
    /// Whether the mappings on their way out, with the pinned arrays waiting that a rent may let go of, would leave room
    /// for <paramref name="length"/> bytes once gone. Only then does a refused rent wait: a rent at a busy limit that no
    /// release can serve (its traffic over the limit) was refused only after other threads' releases, which came one
    /// after another, had kept it waiting its full second.
    /// </summary>
    private bool ReleasesUnderWayCouldMakeRoom(nuint length)
    {
        long underWay = Volatile.Read(ref _bytesUnderWay);
        if (underWay <= 0)
        {
            return false;
        }

        long letGoable = WaitingUnmaps is { } waiting && IsPinnedArray(PageBacking.Plain) ? waiting.CountedBytes : 0;
        return MappedBytes - underWay - letGoable + (long)length <= _limit;
    }

    private bool TryCountUnderLimit(nuint length)
    {
        long mapped = Volatile.Read(ref _mappedBytes);
        while (mapped + (long)length <= _limit)
        {
            long seen = Interlocked.CompareExchange(ref _mappedBytes, mapped + (long)length, mapped);
            if (seen == mapped)
            {
                return true;
            }

            mapped = seen;
        }

        return false;
    }
}
