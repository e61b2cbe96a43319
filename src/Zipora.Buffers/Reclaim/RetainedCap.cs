using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The pool-wide cap on idle memory (<see cref="TieredMemoryPoolOptions.MaxRetainedBytes"/>), checked at every tick of
/// the idle releaser. Over the cap the pool trims. A trim that leaves it over the cap has given back all it could (the
/// rest is pinned by live buffers, or the OS refused to drop it), and another would only walk every free block again:
/// so the cap rests until the pool is rented from or returned to, which is what can make more memory releasable.
/// </summary>
/// <remarks>
/// The idle cap is asked by the idle releaser's timer, one tick at a time; the pressure cap also by the process-wide
/// pressure watcher, concurrently with the ticks: of callers that see the same activity, one is told to trim.
/// </remarks>
internal sealed class RetainedCap(long maxRetainedBytes)
{
    // Rents plus returns over every tier at the last trim the cap asked for; -1 before the first.
    private long _activityAtLastTrim = -1;

    /// <summary>Whether the pool, retaining <paramref name="retained"/> bytes after <paramref name="activity"/> rents and returns, should be trimmed now.</summary>
    public bool IsDue(long retained, long activity)
    {
        if (retained <= maxRetainedBytes)
        {
            return false;
        }

        return Interlocked.Exchange(ref _activityAtLastTrim, activity) != activity;
    }

    /// <summary>
    /// Forgets the trim <see cref="IsDue"/> asked for at <paramref name="activity"/>: it threw partway (out of managed
    /// memory for its tables, a page allocator that failed), and gave back nothing of the tier it was in. Rested on, the
    /// next checks would not trim again until the pool was used, with that tier's free memory still held, under
    /// pressure too (FailedCapTrimRetryTests). A caller that saw other activity since keeps its own note.
    /// </summary>
    public void ForgetFailedTrim(long activity) => Interlocked.CompareExchange(ref _activityAtLastTrim, -1, activity);
}
