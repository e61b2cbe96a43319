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

    /// <summary>Collects when the pinned-array allocator let go of at least the floor since its last collection, and that was <paramref name="rest"/> ago.</summary>
    private static bool CollectLetGoOf(PageAllocator allocator, TimeSpan rest)
    {
        if (allocator is not PinnedArrayPageAllocator pinned || pinned.UnmappedBytes < MinimumBytes || !IsRested(rest))
        {
            return false;
        }

        pinned.ResetUnmappedBytes();
        Collect();
        return true;
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
        long now = Environment.TickCount64;
        lock (s_lock)
        {
            if (now - s_lastCollection < (long)interval.TotalMilliseconds)
            {
                return false;
            }

            s_lastCollection = now;
            return true;
        }
    }

    private static void Collect()
    {
        Interlocked.Increment(ref s_collections);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
