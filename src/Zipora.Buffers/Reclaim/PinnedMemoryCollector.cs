using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Returns the memory of pinned-array pages (Kestrel's mode) to the OS: once the pools have let go of at least
/// <see cref="MinimumBytes"/> of them, it asks the GC for an aggressive collection, at most once per
/// <see cref="MinimumInterval"/>.
/// </summary>
/// <remarks>
/// A pinned array the pool unmaps is only left to the GC. A gen2 collection frees it, yet keeps most of the emptied
/// pinned heap committed: measured with 200 MB of 1 MB pinned arrays let go of, a forced gen2 collection brought
/// resident memory from 252 to 222 MB, an aggressive one to 65 MB (27 ms, with a 20 MB live heap). An aggressive
/// collection is a full blocking compacting one, so its pause grows with the live heap; hence the floor on the bytes
/// to gain and the rest between two collections, which bound the cost to one such pause per half minute at most, and
/// only after a release worth it.
/// </remarks>
internal static class PinnedMemoryCollector
{
    /// <summary>The least memory let go of that is worth an aggressive collection.</summary>
    public const long MinimumBytes = 8L * 1024 * 1024;

    private static readonly Lock s_lock = new();
    private static long s_lastCollection = long.MinValue / 2;
    private static long s_collections;

    // The allocators whose let-go arrays found the collector resting, and the timer that collects them when the rest is
    // over (see DeferUntilRested); the slots under s_lock. Made with the type, so that deferring allocates nothing: a
    // trim under memory pressure defers at the GC heap limit, where it allocates nothing (PinnedPoolTrimHeapLimitSafetyTests).
    // Four slots: the process-wide allocator, and a few of an application's own.
    private static readonly PinnedArrayPageAllocator?[] s_deferred = new PinnedArrayPageAllocator?[4];
    private static readonly Timer s_deferredTimer = IdleTicker.WithoutExecutionContext(static () => new Timer(static _ => CollectDeferred(), null, Timeout.Infinite, Timeout.Infinite));

    /// <summary>The least time between two collections; tests shorten it.</summary>
    internal static TimeSpan MinimumInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The least time between a collection and one asked for under memory pressure: the watcher trims at most once a
    /// second, and the floor of bytes let go of since the last collection still applies, so a process that stays
    /// short pays a pause only when it let go of that much again.
    /// </summary>
    internal static TimeSpan MinimumPressureInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Aggressive collections asked for so far in this process.</summary>
    public static long Collections => Volatile.Read(ref s_collections);

    /// <summary>
    /// Called at a pool's tick, after its releases: collects when the pinned-array allocator has let go of enough
    /// since its last collection and the last collection is long enough ago. Returns whether it collected.
    /// </summary>
    public static bool AfterRelease(PageAllocator allocator) => CollectLetGoOf(allocator, MinimumInterval);

    /// <summary>
    /// Called when memory runs short, after a pool let go of its pinned arrays at once: collects as
    /// <see cref="AfterRelease"/> does, under the same floor, but with a rest of
    /// <see cref="MinimumPressureInterval"/> only. A collection the pool's quiet tick asked for after part of a burst
    /// had been let go of must not keep the rest (seconds later, when the pressure trim lets go of the bulk) out of
    /// the OS for half a minute while the process runs into its limit (KestrelBurstContainerTests).
    /// </summary>
    public static bool AfterPressureRelease(PageAllocator allocator) => CollectLetGoOf(allocator, MinimumPressureInterval);

    /// <summary>
    /// Collects when the pinned-array allocator let go of at least the floor since its last collection, and that was
    /// <paramref name="rest"/> ago; while the collector rests, it collects when the rest is over (see <see cref="DeferUntilRested"/>).
    /// </summary>
    private static bool CollectLetGoOf(PageAllocator allocator, TimeSpan rest)
    {
        if (allocator is not PinnedArrayPageAllocator pinned || pinned.UnmappedBytes < MinimumBytes)
        {
            return false;
        }

        if (!IsRested(rest))
        {
            DeferUntilRested(pinned);
            return false;
        }

        pinned.ResetUnmappedBytes();
        Collect();
        return true;
    }

    /// <summary>
    /// Has the arrays <paramref name="pinned"/> let go of collected when the rest is over, on a timer of the collector's
    /// own: the pool that asked may never tick again. A disposed pool's timer pauses once nothing waits in it, and its
    /// pinned arrays wait for nothing (let go of at once): a host shut down within the rest of the last collection (a
    /// burst's, or the previous host's) kept its whole pinned heap committed for the life of the process
    /// (DisposedPinnedPoolCollectionTests). Holds the allocator, never the pool; allocates nothing.
    /// </summary>
    private static void DeferUntilRested(PinnedArrayPageAllocator pinned)
    {
        lock (s_lock)
        {
            int free = -1;
            for (int i = s_deferred.Length - 1; i >= 0; i--)
            {
                if (ReferenceEquals(s_deferred[i], pinned))
                {
                    free = i;
                    break;
                }

                free = s_deferred[i] is null ? i : free;
            }

            // With every slot taken by other allocators, this one's arrays wait for a later tick of a live pool of its
            // own, as every request did before, or go with the collection the others get.
            if (free >= 0)
            {
                s_deferred[free] = pinned;
                RearmUnsynchronized();
            }
        }
    }

    /// <summary>
    /// Disarms the deferred timer for the unload of the library's context, and keeps it disarmed: armed, it is rooted in
    /// the runtime's timer queue and holds the context for up to <see cref="MinimumInterval"/> (see <see cref="ContextUnload"/>).
    /// </summary>
    public static void StopForUnload()
    {
        lock (s_lock)
        {
            Array.Clear(s_deferred);
            _ = s_deferredTimer.Change(Timeout.Infinite, Timeout.Infinite);
        }
    }

    /// <summary>Arms the deferred timer for the end of the rest (the caller holds <see cref="s_lock"/>).</summary>
    private static void RearmUnsynchronized()
    {
        if (ContextUnload.IsUnloading)
        {
            return;
        }

        long due = s_lastCollection + (long)MinimumInterval.TotalMilliseconds - Environment.TickCount64;
        _ = s_deferredTimer.Change(Math.Clamp(due, 1, uint.MaxValue - 1), Timeout.Infinite);
    }

    /// <summary>The deferred timer's callback: one collection for every allocator deferred that still holds its floor.</summary>
    private static void CollectDeferred()
    {
        try
        {
            lock (s_lock)
            {
                // A collection since (a live pool's tick, the pressure watcher's) may have taken their arrays already.
                bool due = false;
                for (int i = 0; i < s_deferred.Length; i++)
                {
                    if (s_deferred[i] is { } allocator && allocator.UnmappedBytes >= MinimumBytes)
                    {
                        due = true;
                    }
                    else
                    {
                        s_deferred[i] = null;
                    }
                }

                if (!due)
                {
                    return;
                }

                if (!IsRestedUnsynchronized(MinimumInterval))
                {
                    RearmUnsynchronized();
                    return;
                }
            }

            Collect();
        }
        catch (Exception error)
        {
            // A timer's callback, where an exception ends the process.
            BackgroundFailures.Report("collecting pinned arrays let go of during the collector's rest", error);
        }
    }

    /// <summary>
    /// Called after a <see cref="TieredArrayPool"/>'s trim under memory pressure dropped <paramref name="droppedBytes"/>
    /// of cached arrays: those of 16 KB and up are on the pinned heap, which only a gen2 collection frees and only an
    /// aggressive one gives back, and native memory growing toward the limit sets off neither. Collects as
    /// <see cref="AfterRelease"/> does, under the same floor and rest. Returns whether it collected.
    /// </summary>
    public static bool AfterDrop(long droppedBytes)
    {
        if (droppedBytes < MinimumBytes || !IsRested(MinimumInterval))
        {
            return false;
        }

        Collect();
        return true;
    }

    /// <summary>Whether the last collection is at least <paramref name="interval"/> ago; marks a new one when so.</summary>
    private static bool IsRested(TimeSpan interval)
    {
        lock (s_lock)
        {
            return IsRestedUnsynchronized(interval);
        }
    }

    /// <summary>As <see cref="IsRested"/>, for a caller that holds <see cref="s_lock"/>.</summary>
    private static bool IsRestedUnsynchronized(TimeSpan interval)
    {
        long now = Environment.TickCount64;
        if (now - s_lastCollection < (long)interval.TotalMilliseconds)
        {
            return false;
        }

        s_lastCollection = now;
        return true;
    }

    private static void Collect()
    {
        lock (s_lock)
        {
            // One collection is the whole heap's: the arrays of every allocator waiting for the rest's end go with it,
            // whoever asked for it, so the deferred timer does not ask for a second full blocking collection for them.
            for (int i = 0; i < s_deferred.Length; i++)
            {
                s_deferred[i]?.ResetUnmappedBytes();
                s_deferred[i] = null;
            }
        }

        Interlocked.Increment(ref s_collections);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
