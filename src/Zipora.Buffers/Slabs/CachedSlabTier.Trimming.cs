using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A cached slab tier's trims, idle release and disposal: emptying the thread caches safely while their owners run.</summary>
internal abstract partial class CachedSlabTier<TClasses>
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and the
    // pool's dispose takes it (meeting a trim under memory pressure), where running out of managed memory must not stop
    // it.
    private readonly object _trimLock = new();
    private volatile bool _disposed;

    // Set as the dispose begins, before the blocks held elsewhere come back: no thread cache is made from then on.
    // Those blocks come back on the disposing thread, which made itself one (5,408 bytes) for a tier about to drop it.
    private volatile bool _makesNoCaches;

    // Set once a dispose ran to its end, under the trim lock: one that threw partway (out of managed memory) left the
    // blocks it had not taken where the next finds them.
    private bool _disposeFinished;

    // Adaptive: each class is judged idle on its own, so a class that went cold is given back while the others stay
    // busy (the tier-wide judgement of SlabTier waits for the whole tier to go quiet).
    private readonly ClassIdleness _idleness;

    // The idle tick's tables, reused tick after tick: only the tick uses them, never twice at once.
    private readonly SlabTickTables _tick;

    // Made with the tier, not at the first trim or dispose: a static lambda's delegate and its class's statics are made
    // at its first use, which may be at the GC heap limit, where a type initializer that fails leaves every later use
    // throwing, for good.
    private readonly Action<ThreadCache, (CachedSlabTier<TClasses> Tier, bool[]? Classes)> _drainIntoDepots =
        static (cache, state) => state.Tier.DrainIntoDepotsUnsynchronized(cache, state.Classes);

    // The tables of what runs under the trim lock, reused: a trim and the pressure trim's read allocate none.
    private readonly SlabTrimTables _trimTables;

    /// <summary>
    /// Samples each class's buffers in use for the high-water marks and dates each class's activity; when adaptive,
    /// trims each class that saw no rent or return for the whole delay; then lets the slab tier judge the whole
    /// tier's idleness.
    /// </summary>
    public override void ReleaseIdle(long now, long delayInTicks)
    {
        // Only the idle releaser's timer calls this, one tick at a time: the tick's tables are its own, made with the
        // tier, so a steady tick allocates nothing (MemoryPoolIdleTickAllocationTests).
        ClassCounts[] byClass = _tick.Counts;
        CountByClass(byClass, _tick.HeldElsewhere);

        // A block reused outside the tier's rents and returns is in use all the same: its class is not idle.
        long[] elsewhere = _tick.ActivityElsewhere;
        Array.Clear(elsewhere);
        CountActivityElsewhere(elsewhere);
        long[] inUse = _tick.InUse;
        long activity = 0;
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            ClassCounts counts = byClass[classIndex];
            inUse[classIndex] = counts.Hits + counts.Misses - counts.Returns;
            long reused = elsewhere[classIndex];
            byClass[classIndex].Returns += reused;
            activity += counts.Hits + counts.Misses + counts.Returns + reused;
        }

        _highWater.Sample(now, delayInTicks, inUse);
        if (_idleness.IdleClasses(byClass, now, _tick.Idle))
        {
            if (_adaptive)
            {
                TrimClasses(_tick.Idle);
            }

            // Only once trimmed: a trim that failed (out of managed memory) leaves the classes due at the next tick.
            _idleness.MarkReleased(_tick.Idle);
        }

        TrimIfIdle(now, activity);
    }

    public override void Dispose()
    {
        // Before the tier's own lock: what gives the blocks back takes the thread caches' locks and this tier's return
        // path. On a thread without a cache of the tier, they go to the depots (see ReleaseWithoutCache): nothing is
        // allocated.
        _makesNoCaches = true;
        ReleaseHeldElsewhere(forGood: true);
        lock (_trimLock)
        {
            if (_disposeFinished)
            {
                return;
            }

            // Rents stop first: they pass the caches by from here, and a rent that does sees the tier disposed.
            _disposed = true;
            _cachesClosed = true;

            // Every slab now waits for all the blocks it carved: those in the caches, released below, and those rented,
            // released as they come back. Nothing here allocates (a component disposed at the GC heap limit: a list of
            // the cached blocks failed to fit there in a CI run), and what can throw, a depot that must grow for a
            // block listed twice (a caller's stale dispose), leaves the blocks it did not move where the next dispose
            // finds them.
            _heap.StopCarving();
            try
            {
                CloseAndEmptyCachesIntoDepots(null);
            }
            finally
            {
                // Also when the emptying failed: what reached the depots goes with its slabs, where it lies.
                foreach (SizeClassDepot<NativeMemoryManager> depot in _depots)
                {
                    depot.CloseAndClaim();
                    _heap.ReleaseCached(depot.Claimed);
                    depot.EndClaim();
                }
            }

            _registry.ReleaseSlot();
            _disposeFinished = true;
        }
    }

    public override void Trim() => TrimClasses(null);

    /// <summary>Gives back the free blocks of the chosen classes (all when <paramref name="classes"/> is null).</summary>
    /// <remarks>
    /// The free blocks stay in the depots, claimed (see <see cref="SizeClassDepot{T}.Claim"/>): the depots have room
    /// for every block, so a trim of any number of cached blocks allocates no list of them, and a trim at the GC heap
    /// limit lets go of what it finds.
    /// </remarks>
    private void TrimClasses(bool[]? classes)
    {
        ReleaseHeldElsewhere(forGood: false);
        lock (_trimLock)
        {
            if (_disposed)
            {
                return;
            }

            try
            {
                CloseAndEmptyCachesIntoDepots(classes);
                for (int classIndex = 0; classIndex < _depots.Length; classIndex++)
                {
                    if (classes?[classIndex] ?? true)
                    {
                        _depots[classIndex].Claim();
                    }
                }

                long[] returnedBy = ReturnedByClassUnderTrimLock(out long[] rentedByClass);
                _heap.TrimFree(_depots, returnedBy, classes, rentedByClass);
            }
            finally
            {
                // Also when the trim failed (a process out of managed memory): the claimed blocks not let go of with
                // their slabs go back (no allocation), and the caches reopen (left closed, every rent and return would
                // pass them by).
                foreach (SizeClassDepot<NativeMemoryManager> depot in _depots)
                {
                    depot.EndClaim();
                }

                _cachesClosed = false;

                // The slabs let go of go back to the OS now, a system call each, out of the heap's lock and with the
                // caches open, but before the trim returns (resident memory has fallen by then), and under the trim
                // lock (no disposal meanwhile). Also when the trim threw partway: those it let go of still go.
                _heap.GiveBackLetGoSlabs();
            }
        }
    }

    /// <summary>
    /// Gives back to the tier, as returns, the free blocks kept for its users outside its own caches (the medium tier's:
    /// the segmented buffers' parked blocks), before a trim or the tier's disposal (<paramref name="forGood"/>) empties
    /// the caches. Called without any of the tier's locks held.
    /// </summary>
    protected virtual void ReleaseHeldElsewhere(bool forGood)
    {
    }

    /// <summary>
    /// Closes the caches and moves the blocks they hold of the chosen classes (all when <paramref name="classes"/> is
    /// null) into their depots, whose room for every block is reserved: no allocation. Caller holds the trim lock (a
    /// trim, or the tier's dispose, which then closes the depots too).
    /// </summary>
    private void CloseAndEmptyCachesIntoDepots(bool[]? classes)
    {
        _cachesClosed = true;
        HandshakeCache.EmptyEach(_registry, (Tier: this, Classes: classes), _drainIntoDepots);
    }

    /// <summary>Moves the blocks of the chosen classes of a cache whose owner is kept out into their depots.</summary>
    private void DrainIntoDepotsUnsynchronized(ThreadCache cache, bool[]? classes)
    {
        for (int classIndex = 0; classIndex < _capacities.Length; classIndex++)
        {
            if (!(classes?[classIndex] ?? true))
            {
                continue;
            }

            ref ClassStack stack = ref cache.StackOf(classIndex);

            // The short slots that replace grown ones first (none for a disposed tier: it caches nothing from now on),
            // and the stack settled back if the depot must grow (only for a block listed twice, a caller's stale
            // dispose) and cannot: out of managed memory, the stack keeps its blocks, as it holds them (none may be
            // both here and there).
            NativeMemoryManager[]? shorter = _disposed ? ClassStack.NoSlots
                : stack.Items.Length > ClassStack.InitialSlots ? ThreadCache.InitialSlotsFor(_capacities[classIndex]) : null;
            stack.Compact();
            int moving = stack.Count;
            try
            {
                _depots[classIndex].PutFrom(stack.Items.AsSpan(0, moving), ref moving, moving);
            }
            catch
            {
                stack.Settle();
                throw;
            }

            EmptyDrained(ref stack, classIndex, shorter);
        }
    }

    /// <summary>
    /// Counts the blocks just moved out of a compacted stack as drained and empties it; <paramref name="shorter"/>, if
    /// any, replaces its slots.
    /// </summary>
    private void EmptyDrained(ref ClassStack stack, int classIndex, NativeMemoryManager[]? shorter)
    {
        if (shorter is null)
        {
            stack.Items.AsSpan().Clear();
        }
        else
        {
            // The grown slots go to the GC, with the references to blocks now moved out: nothing reaches them.
            stack.Items = shorter;
        }

        stack.Drained += stack.Count;
        stack.Count = 0;

        // A class given back starts over small, as it would on a new thread.
        stack.SetCapacity(_disposed ? 0 : _initialCapacities[classIndex]);
        stack.Overflows = 0;
    }

    /// <summary>
    /// Moves the blocks of a thread that has exited to the depots and folds its counters into the retired totals.
    /// The registry calls it with its lock held.
    /// </summary>
    private void RetireUnsynchronized(ThreadCache cache)
    {
        for (int classIndex = 0; classIndex < _capacities.Length; classIndex++)
        {
            ref ClassStack stack = ref cache.StackOf(classIndex);
            _retiredRequestedBytes += stack.RequestedBytes;
            _retiredHits[classIndex] += stack.Hits;
            _retiredMisses[classIndex] += stack.Misses;
            Interlocked.Add(ref _retiredReturns[classIndex], stack.Returns);
            if (stack.Count > 0)
            {
                stack.Compact();
                _depots[classIndex].PutFrom(stack.Items.AsSpan(0, stack.Count), ref stack.Count, stack.Count);
            }
        }
    }

    /// <summary>
    /// Per class, the tick by which its free blocks had all been returned; called by a trim after it collected them,
    /// when every return that put one of them back has also been counted (see <see cref="ReleaseSlow"/>). Also gives
    /// the bytes rented so far from each class. Both are the trim tables' (the caller holds the trim lock): this
    /// allocates nothing.
    /// </summary>
    private long[] ReturnedByClassUnderTrimLock(out long[] rentedByClass)
    {
        ClassCounts[] byClass = CountIntoTrimTablesUnderTrimLock();
        rentedByClass = _trimTables.RentedBytes;
        long now = Clock.Epoch;
        long[] returnedBy = _trimTables.ReturnedBy;
        for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
        {
            ClassCounts counts = byClass[classIndex];
            returnedBy[classIndex] = _idleness.ReturnedBy(classIndex, counts.Hits + counts.Misses + counts.Returns, now);
        }

        return returnedBy;
    }
}
