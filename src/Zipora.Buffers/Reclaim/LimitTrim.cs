using System;

namespace Zipora.Buffers;

/// <summary>
/// The trim a mapping past <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> asks for. A trim walks every free
/// block of the slab tiers; one that left the pool at its limit gave back all it could (live buffers pin the rest),
/// and another with no rent or return since would walk them all again for nothing: measured, with a hundred thousand
/// free small blocks pinned by their neighbours, every refused rent spent 45 ms of CPU, and with a million, a second.
/// So, as the retained cap does (<see cref="RetainedCap"/>), it rests until the pool is rented from or returned to.
/// Every other trim of the pool (<see cref="RunNow"/>) takes the same lock, so a rent at the limit never meets one halfway.
/// </summary>
/// <remarks>
/// Runs on the slow path only (a mapping past the limit). Trims one at a time: a rent refused while another's trim
/// runs waits for it, then tries its mapping again against the room that trim made.
/// </remarks>
/// <param name="activity">Rents plus returns over every tier so far.</param>
/// <param name="trim">Trims every tier; given true, lets go of the pinned arrays of the region tiers at once (see <see cref="RunNow"/>).</param>
internal sealed class LimitTrim(Func<long> activity, Action<bool> trim)
{
    // A monitor, not a System.Threading.Lock: contended, it allocates nothing (see RegionTier's trim lock).
    private readonly object _lock = new();

    // Rents plus returns at the last trim; -1 before the first.
    private long _activityAtLastTrim = -1;

    /// <summary>Trims unless the pool was not used since the last trim here; returns whether it trimmed.</summary>
    public bool Run()
    {
        lock (_lock)
        {
            // Read before the trim: a return racing with it is counted after, and the next refusal trims again. That holds
            // while every tier counts a return no sooner than its block or region is where a trim finds it (or under the
            // lock that trim's walk takes): counted first and placed after, a return seen here was missed by the trim
            // below and rested on by every refusal after it (SizeClassDepot.TryPutCounted).
            long now = activity();
            if (now == _activityAtLastTrim)
            {
                return false;
            }

            // Noted once the trim is done, not before: a trim that threw partway (a slab tier's, out of managed memory
            // for the free blocks it takes out) gave back nothing of that tier, and noted first, every refusal after
            // it rested on it, refused with the free blocks still cached, once the heap had room again and for as
            // long as the pool was not otherwise used (FailedTrimAtTheCapHeapLimitSafetyTests). Unnoted, the next
            // refusal trims again.
            trim(false);
            _activityAtLastTrim = now;
            return true;
        }
    }

    /// <summary>
    /// Trims now, whatever the activity: the pool's <c>Trim</c> (called by users, the idle cap and memory pressure).
    /// One at a time with <see cref="Run"/>: a trim takes free memory out of the caches before it gives it back, so a
    /// rent at the limit whose own trim ran meanwhile found nothing idle and was refused, while that memory was on its
    /// way back to the OS (MixedTiersAtTheCapSafetyTests). Now such a rent waits for the other trim, then maps into
    /// the room it made. With <paramref name="pinnedArraysAtOnce"/> (memory pressure), the pinned arrays the region
    /// tiers let go of leave the pool before the slab tiers are trimmed (see the pool's <c>TrimEveryTier</c>).
    /// </summary>
    public void RunNow(bool pinnedArraysAtOnce = false)
    {
        lock (_lock)
        {
            trim(pinnedArraysAtOnce);
        }
    }
}
