using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A slab tier's trim works on the depot's free blocks where they lie: it claims every buffer the depot holds, sorts
/// them by address and lets go of slabs in the depot's own array, then hands back those it kept.
/// </summary>
/// <remarks>
/// The array has room for every buffer of the class (see <see cref="ReserveOne"/>), so a trim of a million cached
/// blocks needs no list of them: its lists and tables cost about 28 bytes of managed memory a block, and a trim under
/// memory pressure, meant to give the heap room, ran out of it and kept everything (TrimAllocationBoundTests).
/// While claimed, the buffers below <see cref="_claimed"/> are the trim's alone: rents take only those above, returns
/// go on top, and a growth of the array copies the claimed ones along (the trim keeps working on the array it
/// claimed, and <see cref="EndClaim"/> writes what it kept into the array there is then).
/// </remarks>
internal sealed partial class SizeClassDepot<T>
{
    // The array claimed and how many of its first buffers are the trim's; null and 0 when no trim claims.
    private T[]? _claimedItems;
    private int _claimed;

    // Claimed places whose buffer the trim let go of (a slab given back, a copy listed twice): still taken until the
    // claim ends, so they count against the room and not in Count.
    private int _claimedGone;

    /// <summary>The buffers claimed, for the trim that claimed them alone; empty when none are.</summary>
    public Span<T> Claimed => _claimedItems.AsSpan(0, _claimed);

    /// <summary>
    /// Claims every buffer the depot holds now, for one trim (see the remarks); <see cref="EndClaim"/> ends it. An
    /// empty depot is not claimed: its end then takes no lock (a return may hold it).
    /// </summary>
    public void Claim()
    {
        lock (_lock)
        {
            ClaimUnsynchronized();
        }
    }

    /// <summary>
    /// Closes the depot for good (<see cref="TryPutCounted"/> refuses from now on) and claims every buffer it holds:
    /// the disposing slab tier releases them where they lie, with no list of them, and ends the claim.
    /// </summary>
    public void CloseAndClaim()
    {
        lock (_lock)
        {
            _closed = true;
            ClaimUnsynchronized();
        }
    }

    private void ClaimUnsynchronized()
    {
        Debug.Assert(_claimedItems is null, "one claim at a time: the trim lock");
        if (_count > 0)
        {
            _claimedItems = _items;
            _claimed = _count;
        }
    }

    /// <summary>
    /// Counts <paramref name="count"/> claimed places as let go of (the trim nulls them): negative to take that back
    /// when what would have let go of them failed.
    /// </summary>
    public void ForgetClaimed(int count)
    {
        lock (_lock)
        {
            _claimedGone += count;
        }
    }

    /// <summary>
    /// Ends the claim: the claimed buffers still there go back below those returned meanwhile, the places let go of are
    /// free again. Allocates nothing and never throws, so a trim that failed partway hands back all it kept.
    /// </summary>
    public void EndClaim()
    {
        // Written only by the trim that calls this (under the trim lock): read without the depot's lock.
        T[]? claimed = _claimedItems;
        if (claimed is null)
        {
            return;
        }

        lock (_lock)
        {
            // Into the array there is now: the same one, compacted in place (kept never passes index), or the one a
            // growth made, whose copies of the claimed places are stale.
            int kept = 0;
            for (int index = 0; index < _claimed; index++)
            {
                T? buffer = claimed[index];
                if (buffer is not null)
                {
                    _items[kept++] = buffer;
                }
            }

            int above = _count - _claimed;
            Array.Copy(_items, _claimed, _items, kept, above);

            // Nothing in the pool may keep a block reachable where it no longer counts it.
            Array.Clear(_items, kept + above, _count - (kept + above));

            // The places let go of are forgotten before the count falls: Count, read without the lock in this order,
            // never sees the new count less the old places.
            Volatile.Write(ref _claimedGone, 0);
            Volatile.Write(ref _count, kept + above);
            _claimedItems = null;
            _claimed = 0;
        }
    }
}
