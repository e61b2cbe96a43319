using System;
using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A cached slab tier's trims, idle release and disposal: emptying the thread caches safely while their owners run.</summary>
internal abstract partial class CachedSlabTier<TClasses>
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and the
    // pool's dispose takes it (meeting a trim under memory pressure), where running out of managed memory must not stop it.
    private readonly object _trimLock = new();
    private volatile bool _disposed;

    // Set once a dispose ran to its end, under the trim lock: one that threw partway (out of managed memory) left the
    // blocks it had not taken where the next finds them.
    private bool _disposeFinished;

    // Adaptive: each class is judged idle on its own, so a class that went cold is given back while the others stay
    // busy (the tier-wide judgement of SlabTier waits for the whole tier to go quiet).
    private readonly ClassIdleness _idleness;

    // The idle tick's tables, reused tick after tick: only the tick uses them, never twice at once.
    private readonly SlabTickTables _tick;

    // The tables of what runs under the trim lock, reused: a trim and the pressure trim's read allocate none.
    private readonly SlabTrimTables _trimTables;

    // The room the lists are made with: a first trim of up to this many free blocks, at the GC heap limit too, allocates none.
    private const int TrimListBlocksMade = 128;

    // A trim's lists of the free blocks it took out and of those it keeps, under the trim lock, emptied after each trim.
    private readonly List<NativeMemoryManager> _trimFree = new(TrimListBlocksMade);
    private readonly List<NativeMemoryManager> _trimKept = new(TrimListBlocksMade);

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
        // Before the tier's own lock: what gives the blocks back takes the thread caches' locks and this tier's return path.
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

            // Room for every block there is (the heap carves no more), before one moves: out of managed memory this
            // throws with every block where it was, and the next dispose starts again here.
            var cached = new List<NativeMemoryManager>(_heap.StopCarving());
            try
            {
                CloseAndEmptyCaches(cached);
                foreach (SizeClassDepot<NativeMemoryManager> depot in _depots)
                {
                    depot.DrainInto(cached, close: true);
                }
            }
            finally
            {
                // Also when the draining failed (the room holds every block once; only a block in two caches, a caller's
                // stale dispose, can need more): the blocks taken out go with their slabs, the next dispose takes the
                // rest. This allocates nothing.
                _heap.ReleaseCached(cached);
            }

            _registry.ReleaseSlot();
            _disposeFinished = true;
        }
    }

    public override void Trim() => TrimClasses(null);

    /// <summary>Gives back the free blocks of the chosen classes (all when <paramref name="classes"/> is null).</summary>
    private void TrimClasses(bool[]? classes)
    {
        ReleaseHeldElsewhere(forGood: false);
        lock (_trimLock)
        {
            if (_disposed)
            {
                return;
            }

            // The tier's lists, under the trim lock: a trim at the GC heap limit must not allocate before it lets go.
            List<NativeMemoryManager> free = _trimFree;
            List<NativeMemoryManager>? kept = null;
            try
            {
                CloseAndEmptyCaches(free, classes);
                for (int classIndex = 0; classIndex < _depots.Length; classIndex++)
                {
                    if (classes?[classIndex] ?? true)
                    {
                        _depots[classIndex].DrainInto(free, close: false);
                    }
                }

                long[] returnedBy = ReturnedByClassUnderTrimLock(out long[] rentedByClass);
                // Room first: a list named kept before it has room would, if growing it failed, hand back none of the blocks.
                _trimKept.EnsureCapacity(free.Count);
                kept = _trimKept;
                _heap.TrimFree(free, returnedBy, classes, rentedByClass, kept);
            }
            finally
            {
                // Also when the trim failed (a process out of managed memory): the blocks taken out that are still the
                // tier's go to the depots (whose room is reserved: no allocation; once the heap has begun, it says
                // which they are), and the caches reopen (left closed, every rent and return would pass them by).
                GiveBack(kept ?? free);
                _cachesClosed = false;
                EmptyTrimLists();
            }
        }
    }

    /// <summary>
    /// Empties the trim's lists, which must not keep a block reachable (a block let go of with its slab, or a leaked
    /// one, would never be collected); lists grown past <see cref="SlabHeap.TrimBlocksKept"/> give their room back.
    /// </summary>
    private void EmptyTrimLists()
    {
        foreach (List<NativeMemoryManager> list in (ReadOnlySpan<List<NativeMemoryManager>>)[_trimFree, _trimKept])
        {
            list.Clear();
            if (list.Capacity > SlabHeap.TrimBlocksKept)
            {
                // Shrinking to none allocates nothing; the next trim grows it again.
                list.Capacity = 0;
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

    /// <summary>Puts free blocks a trim took out back in their classes' depots.</summary>
    private void GiveBack(List<NativeMemoryManager> blocks)
    {
        foreach (NativeMemoryManager buffer in blocks)
        {
            _depots[TClasses.ClassIndexOfBlock(buffer.Length)].Put(buffer);
        }
    }

    /// <summary>
    /// Closes the caches and moves the blocks they hold of the chosen classes (all when <paramref name="classes"/> is
    /// null) into <paramref name="into"/>. Caller holds the trim lock.
    /// </summary>
    private void CloseAndEmptyCaches(List<NativeMemoryManager> into, bool[]? classes = null)
    {
        _cachesClosed = true;
        HandshakeCache.EmptyEach(_registry, (Tier: this, Into: into, Classes: classes), static (cache, state) => state.Tier.DrainUnsynchronized(cache, state.Into, state.Classes));
    }

    /// <summary>Moves the blocks of the chosen classes of a cache whose owner is kept out into <paramref name="into"/>.</summary>
    private void DrainUnsynchronized(ThreadCache cache, List<NativeMemoryManager> into, bool[]? classes)
    {
        for (int classIndex = 0; classIndex < _capacities.Length; classIndex++)
        {
            if (!(classes?[classIndex] ?? true))
            {
                continue;
            }

            ref ClassStack stack = ref cache.StackOf(classIndex);

            // Room first, and the short slots that replace grown ones: out of managed memory, the stack keeps its
            // blocks, as it holds them (none may be both here and there, and a stack left compacted would lose one at
            // its next compaction). A disposed tier's stacks are never used again: their slots go, for none.
            into.EnsureCapacity(into.Count + stack.Count);
            NativeMemoryManager[]? shorter = _disposed ? ClassStack.NoSlots
                : stack.Items.Length > ClassStack.InitialSlots ? ThreadCache.InitialSlotsFor(_capacities[classIndex])
                : null;
            stack.Compact();
            into.AddRange(stack.Items.AsSpan(0, stack.Count));

            if (shorter is null)
            {
                stack.Items.AsSpan().Clear();
            }
            else
            {
                // The grown slots go to the GC, with the references to blocks now in the list: nothing reaches them.
                stack.Items = shorter;
            }

            stack.Drained += stack.Count;
            stack.Count = 0;

            // A class given back starts over small, as it would on a new thread.
            stack.SetCapacity(_disposed ? 0 : _initialCapacities[classIndex]);
            stack.Overflows = 0;
        }
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
