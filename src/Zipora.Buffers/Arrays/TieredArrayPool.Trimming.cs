using System.Threading;

namespace Zipora.Buffers;

/// <summary>The array pool's trims and idle release: dropping cached arrays for the GC while their owners run.</summary>
public sealed partial class TieredArrayPool
{
    /// <summary>
    /// Drops every cached array, from every thread's cache and the depots, so the GC can collect them. Arrays rented
    /// out are not touched. The pool also does this on its own for size classes idle longer than
    /// <see cref="TieredArrayPoolOptions.IdleReleaseDelay"/>, and when the GC reports high memory load.
    /// </summary>
    public void Trim() => DropCached(_everyClass);

    /// <summary>Stops the idle ticks for the unload of the library's context: an array pool waits for nothing to be unmapped.</summary>
    void IReclaimablePool.PauseForUnload() => _idleReleaser?.PauseIf(static () => true);

    /// <summary>Drops the arrays of the classes that saw no rent or return for the whole delay.</summary>
    void IReclaimablePool.ReleaseIdle(long now, long delayInTicks)
    {
        if (ContextUnload.IsUnloading)
        {
            // Its ticks would hold the unloading context; what it caches goes with the pool (see ContextUnload).
            ((IReclaimablePool)this).PauseForUnload();
            return;
        }

        if (!_registry.MayHaveCaches && Volatile.Read(ref _depotBytes) == 0)
        {
            // Nothing cached anywhere, so nothing to drop: an idle pool's tick costs two reads. The activity it skips
            // dating is dated at the first tick that looks again, which only makes the class seem used later.
            return;
        }

        // The tick's own tables, made with the pool: the tick runs at the GC heap limit too, where an allocation throws
        // before anything is dropped (ArrayPoolIdleTickHeapLimitSafetyTests). Only the tick uses them, and the ticker
        // never runs it twice at once; a trim on another thread uses its own (_everyClass).
        CountByClass(_tickCounts, out _, out _);
        if (_idleness.IdleClasses(_tickCounts, now, _tickIdle))
        {
            DropCached(_tickIdle);

            // Only once dropped: a tick that failed before leaves the classes due at the next.
            _idleness.MarkReleased(_tickIdle);
        }
    }

    /// <summary>
    /// Drops the arrays of the chosen classes from every thread's cache and from the depots; returns their bytes. A
    /// thread's stack is abandoned whole, so its owner never waits for a trim nor a trim for it (see
    /// <see cref="ArrayThreadCache"/>). Allocates nothing: the pressure watch trims when the managed heap nears its
    /// limit, and a heap that grew past it between two checks meets the trim at the limit itself, where an allocation
    /// before the drop threw and kept every array (ArrayPoolTrimHeapLimitSafetyTests).
    /// </summary>
    private long DropCached(bool[] classes)
    {
        lock (_trimLock)
        {
            long dropped = 0;
            lock (_registry.Lock)
            {
                _registry.RetireExitedUnsynchronized();
                foreach (ArrayThreadCache cache in _registry.Caches)
                {
                    for (int classIndex = 0; classIndex < classes.Length; classIndex++)
                    {
                        if (classes[classIndex])
                        {
                            dropped += (long)AbandonSlots(cache, classIndex) * _classLengths[classIndex];
                        }
                    }
                }

                // The depots too, and every array counted evicted, under the lock the statistics read under (see
                // CountByClass): a read sees an array in its stack or depot, or evicted, never neither. Depots cleared
                // outside it, counted after the last one, lost from a read in between every array of those already
                // emptied (ArrayPoolTrimStatisticsRaceTests).
                long depotBytes = 0;
                for (int classIndex = 0; classIndex < classes.Length; classIndex++)
                {
                    if (classes[classIndex])
                    {
                        depotBytes += (long)_depots[classIndex].Clear() * _classLengths[classIndex];
                    }
                }

                Interlocked.Add(ref _depotBytes, -depotBytes);
                dropped += depotBytes;
                Interlocked.Add(ref _evictedBytes, dropped);
            }

            return dropped;
        }
    }

    /// <summary>
    /// Swaps the slots of a class in a cache for <see cref="ArrayThreadCache.NoStack"/>, leaving them to the GC;
    /// returns how many arrays the stack held. Stacks without slots are skipped: nothing to drop, or a count not yet
    /// settled by their owner, or being settled (<see cref="ArrayThreadCache.Settling"/>). Caller holds the trim lock.
    /// </summary>
    private static int AbandonSlots(ArrayThreadCache cache, int classIndex)
    {
        ref ArrayClassStack stack = ref cache.StackOf(classIndex);
        byte[][] slots = Volatile.Read(ref stack.Items);
        if (slots == ArrayThreadCache.NoStack || slots == ArrayThreadCache.Settling)
        {
            return 0;
        }

        // Counted before the swap: the owner sees the count recorded as soon as it sees the slots gone.
        int count = Volatile.Read(ref stack.Count);
        Volatile.Write(ref cache.TrimmedCount[classIndex], count);
        Volatile.Write(ref cache.Trimmed[classIndex], cache.Trimmed[classIndex] + count);
        Volatile.Write(ref stack.Items, ArrayThreadCache.NoStack);
        return count;
    }

    /// <summary>
    /// Moves the arrays of a thread that has exited to the depots and folds its counters into the retired totals.
    /// The registry calls it with its lock held.
    /// </summary>
    private void RetireUnsynchronized(ArrayThreadCache cache)
    {
        for (int classIndex = 0; classIndex < _classLengths.Length; classIndex++)
        {
            ref ArrayClassStack stack = ref cache.StackOf(classIndex);
            _retiredHits[classIndex] += cache.HitsOf(classIndex);
            _retiredMisses[classIndex] += cache.Misses[classIndex];
            // Interlocked: a return that could not reach its cache adds to it without the lock (see ReturnPastTheCache).
            Interlocked.Add(ref _retiredReturns[classIndex], stack.Returns);
            int held = cache.HeldOf(classIndex);
            byte[][] slots = stack.Items;
            if (slots != ArrayThreadCache.NoStack && held > 0)
            {
                NewestFirstSlots.Compact(slots, stack.Count);
                MoveToDepot(slots, ref stack.Count, classIndex, held);
            }
            else if (held != 0)
            {
                // Slots a trim abandoned while the thread raced it: settle what the racing operation did to them.
                Interlocked.Add(ref _evictedBytes, (long)held * _classLengths[classIndex]);
            }
        }
    }
}
