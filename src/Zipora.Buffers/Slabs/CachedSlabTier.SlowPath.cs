using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A cached slab tier's misses: finding or creating the thread's cache, the depot, fresh slabs, the adaptation.</summary>
internal abstract partial class CachedSlabTier<TClasses>
{
    // Adaptive thread caches start a class at a quarter of its capacity, grow it by half each time it runs empty,
    // and shrink it by a quarter after this many overflows without running empty, down to an eighth.
    private const int OverflowsBeforeShrink = 4;

    private readonly bool _adaptive;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentSlow(int classIndex, int size)
    {
        ThreadCache? cache = FindThreadCache() ?? CreateThreadCache();
        if (cache is null)
        {
            ThrowHelper.ThrowPoolDisposed();
        }

        ref ClassStack stack = ref cache.StackOf(classIndex);

        // Made before the handshake: nothing may allocate while the cache is marked busy (see SizeClassDepot.ReserveOne).
        NativeMemoryManager[]? longer = LongerSlotsForARent(ref stack);
        Volatile.Write(ref cache.InUse, 1);
        if (_cachesClosed)
        {
            Volatile.Write(ref cache.InUse, 0);
            return RentBypassingCache(ref stack, classIndex, size);
        }

        // Inside the handshake, so a trim finds every block in the old slots or in the new. One that ran since the
        // array was made left shorter slots: the longer ones still hold all they do.
        if (longer is not null && longer.Length > stack.Items.Length)
        {
            stack.GrowInto(longer);
        }

        NativeMemoryManager? block = null;
        if (stack.Count == 0 && stack.Capacity > 0)
        {
            if (_adaptive)
            {
                GrowAfterRunningEmpty(ref stack, classIndex);
            }

            // Refill half the stack at once (as much as its slots hold), so the depot's lock is paid once per batch.
            // Into slots 0 up of the empty stack; then slot 0's block is made the newest.
            int batch = Math.Min(Math.Max(1, stack.Capacity / 2), stack.PushLimit);
            stack.NetTransfers += _depots[classIndex].TakeInto(cache.Slots(classIndex), ref stack.Count, batch);
            stack.Settle();
        }

        if (stack.TryPop(out NativeMemoryManager popped))
        {
            block = popped;
        }
        else if (stack.Capacity == 0)
        {
            // Per-thread caching is off for this class: go to the depot for every block, as a move in and a pop.
            block = _depots[classIndex].TakeOne();
            stack.NetTransfers += block is null ? 0 : 1;
        }

        Volatile.Write(ref cache.InUse, 0);
        return HandOut(ref stack, classIndex, size, block);
    }

    /// <summary>Rents while the caches are closed: from the depot or a fresh block, touching only this thread's counters.</summary>
    private NativeMemoryManager RentBypassingCache(ref ClassStack stack, int classIndex, int size)
    {
        if (_disposed)
        {
            ThrowHelper.ThrowPoolDisposed();
        }

        NativeMemoryManager? block = _depots[classIndex].TakeOne();
        stack.NetTransfers += block is null ? 0 : 1;
        return HandOut(ref stack, classIndex, size, block);
    }

    /// <summary>Hands out a free block (a hit, already counted by its move) or, when there is none, a freshly carved one (a miss).</summary>
    private NativeMemoryManager HandOut(ref ClassStack stack, int classIndex, int size, NativeMemoryManager? free)
    {
        if (free is not null)
        {
            stack.RequestedBytes += size;
            free.Reactivate();
            return free;
        }

        // Called with the thread's cache released: mapping a slab may trim the pool, and a trim waits for every cache.
        // Counted only once the block exists: a rent refused at the pool's limit asked for nothing.
        // Room in the class's depot first, for the block to be made: a return then never allocates (see ReserveOne).
        SizeClassDepot<NativeMemoryManager> depot = _depots[classIndex];
        depot.ReserveOne();
        NativeMemoryManager carved;
        try
        {
            carved = _heap.Carve(classIndex, TClasses.ClassSize(classIndex), TClasses.SlabBytes(classIndex), TClasses.Name);
        }
        catch (InsufficientMemoryException)
        {
            depot.Unreserve(1);

            // Refused at the pool's cap, after a trim: the free blocks of the class that other threads' caches held
            // went to its depot (their slabs pinned by live neighbours), where this rent looked before they came
            // (CachedBlocksAtTheCapSafetyTests). One of them serves it, as a move in from the depot.
            NativeMemoryManager? freed = depot.TakeOne();
            if (freed is null)
            {
                _pages.CountRefusedRent();
                throw;
            }

            stack.NetTransfers++;
            return HandOut(ref stack, classIndex, size, freed);
        }
        catch
        {
            depot.Unreserve(1);
            throw;
        }

        stack.Misses++;
        stack.RequestedBytes += size;
        return carved;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseSlow(NativeMemoryManager buffer, int classIndex)
    {
        // No cache also once the tier's dispose has begun (it makes none then): through the depot all the same, which
        // takes the block until the dispose closes it. Straight to the heap, a block returned after the tier was marked
        // disposed and before its heap stopped carving was counted down before the heap counted what each slab waits
        // for, then waited for again: its slab stayed mapped for good (ReturnBeforeCarvingStopsTests).
        if (!TryFindThreadCacheToReturnInto(out ThreadCache? cache) || cache is null)
        {
            ReleaseWithoutCache(buffer, classIndex);
            return;
        }

        ref ClassStack stack = ref cache.StackOf(classIndex);
        Volatile.Write(ref cache.InUse, 1);
        if (!_cachesClosed)
        {
            stack.Returns++;
            if (stack.Capacity == 0)
            {
                // Not cached per thread: straight to the depot, counted as a return and a move out.
                stack.NetTransfers--;
                _depots[classIndex].Put(buffer);
            }
            else if (!stack.TryPush(buffer))
            {
                // Full: keep the warmest half of what the stack may hold here and move the rest to the depot for
                // other threads. The capacity may shrink first, and is set after the move. Slots shorter than the
                // capacity do not grow here: a return must not allocate; this thread's rents grow them.
                int capacity = _adaptive ? ShrinkAfterOverflow(ref stack, classIndex) : stack.Capacity;
                MoveOldestToDepot(ref stack, classIndex, stack.Count - (Math.Min(capacity, stack.Items.Length) / 2));
                stack.SetCapacity(capacity);
                _ = stack.TryPush(buffer);
            }

            Volatile.Write(ref cache.InUse, 0);
            return;
        }

        Volatile.Write(ref cache.InUse, 0);

        // The caches are closed for a trim: hand the block straight to the depot, counted as a return under the
        // depot's lock with the put (see TryPutCounted: a trim that drains the depot sees it counted and dates the
        // block as just returned, and a rent at the limit that read the count finds the block). A disposed tier's
        // depots are closed too, and the block is then freed below. These counters are the owner's alone: a trim
        // draining this cache right now writes only the slots, the count and its own Drained.
        stack.NetTransfers--;
        if (_depots[classIndex].TryPutCounted(buffer, ref stack.Returns))
        {
            return;
        }

        // Refused by a closed depot: the tier is disposed, its heap stopped carving. The block is counted as
        // returned and its memory freed with its slab.
        stack.NetTransfers++;
        Interlocked.Increment(ref _retiredReturns[classIndex]);
        _heap.ReleaseAfterDispose(buffer);
    }

    /// <summary>This thread's cache of this tier, found through the per-thread array and made the last used.</summary>
    private ThreadCache? FindThreadCache()
    {
        ThreadCache? cache = _registry.FindForThisThread();
        if (cache is not null)
        {
            TClasses.LastCache = cache;
        }

        return cache;
    }

    /// <summary>
    /// This thread's cache for a return, made if it has none (<see langword="null"/> once the tier's dispose has begun);
    /// <see langword="false"/> when the process is out of managed memory for it, or for the registry's thread-statics
    /// on the thread's first touch. The owner's dispose has already marked the block returned, so a return that threw
    /// would lose it for good (neither a second dispose nor its finalizer would give it back).
    /// </summary>
    private bool TryFindThreadCacheToReturnInto(out ThreadCache? cache)
    {
        try
        {
            cache = FindThreadCache() ?? CreateThreadCache();
            return true;
        }
        catch (OutOfMemoryException)
        {
            cache = null;
            return false;
        }
    }

    /// <summary>
    /// A return on a thread without a cache of the tier, which it cannot make or reach (out of managed memory, or the
    /// tier disposed): the block goes straight to the depot, whose room was reserved when it was made, counted as a
    /// return of a thread that left; once the dispose closed the depot, with its slab. Allocates nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseWithoutCache(NativeMemoryManager buffer, int classIndex)
    {
        // Counted with the put, under the depot's lock, as a return to closed caches is (see ReleaseSlow).
        if (!_depots[classIndex].TryPutCounted(buffer, ref _retiredReturns[classIndex]))
        {
            Interlocked.Increment(ref _retiredReturns[classIndex]);
            _heap.ReleaseAfterDispose(buffer);
        }
    }

    /// <summary>Creates and registers this thread's cache, or returns <see langword="null"/> once the tier's dispose has begun.</summary>
    private ThreadCache? CreateThreadCache()
    {
        lock (_registry.Lock)
        {
            if (_makesNoCaches)
            {
                return null;
            }

            var cache = new ThreadCache(_capacities, _initialCapacities);
            _registry.AddForThisThreadUnsynchronized(cache);
            TClasses.LastCache = cache;
            return cache;
        }
    }

    /// <summary>
    /// Moves the <paramref name="moved"/> oldest blocks of a stack (at most all it holds) to the depot: the older ones
    /// from slot 1 up first, the newest (in slot 0 once compacted) only when every block goes.
    /// </summary>
    private void MoveOldestToDepot(ref ClassStack stack, int classIndex, int moved)
    {
        Debug.Assert(moved <= stack.Count, "a stack moves at most what it holds");
        if (moved <= 0)
        {
            return;
        }

        stack.Compact();
        int older = stack.Count - 1;
        int fromOlder = Math.Min(moved, older);
        _depots[classIndex].PutFrom(stack.Items.AsSpan(1, older), ref older, fromOlder);
        int newest = 1;
        if (moved > fromOlder)
        {
            _depots[classIndex].PutFrom(stack.Items.AsSpan(0, 1), ref newest, 1);
        }

        stack.Count = older + newest;
        stack.NetTransfers -= moved;
        stack.Settle();
    }

    /// <summary>
    /// Longer slots for a stack whose slots this thread's rents have outrun, or <see langword="null"/>: the blocks the
    /// thread took in (carved, or moved from the depot), less those it moved out and trims took, with this rent's, are
    /// in its hands or in the stack, and would not all fit back. Read before the handshake, where a trim may be emptying
    /// the stack: the figures only size the array. Doubles at least, within the capacity, so a burst grows the slots a
    /// few times at most. Out of managed memory, none: the stack then moves blocks to the depot sooner, as a smaller
    /// cache would.
    /// </summary>
    private static NativeMemoryManager[]? LongerSlotsForARent(ref ClassStack stack)
    {
        int slots = stack.Items.Length;
        int capacity = stack.Capacity;
        long held = stack.NetTransfers + stack.Misses - stack.Drained + 1;
        if (slots >= capacity || held <= slots)
        {
            return null;
        }

        try
        {
            return new NativeMemoryManager[(int)Math.Min(capacity, Math.Max(held, 2L * slots))];
        }
        catch (OutOfMemoryException)
        {
            return null;
        }
    }

    /// <summary>Where an adaptive class's capacity starts: a quarter of its limit.</summary>
    private static int InitialCapacity(int max) => max == 0 ? 0 : Math.Max(1, max / 4);

    /// <summary>The least an adaptive class's capacity shrinks to: an eighth of its limit.</summary>
    private static int MinimumCapacity(int max) => max == 0 ? 0 : Math.Max(1, max / 8);

    /// <summary>A class that ran empty needed more: grow its capacity by half, within its limit. Owner thread, inside its handshake.</summary>
    private void GrowAfterRunningEmpty(ref ClassStack stack, int classIndex)
    {
        stack.Overflows = 0;
        stack.SetCapacity(Math.Min(_capacities[classIndex], stack.Capacity + Math.Max(1, stack.Capacity / 2)));
    }

    /// <summary>A class that keeps overflowing holds more than its thread uses: the capacity shrunk by a quarter, or as it is.</summary>
    private int ShrinkAfterOverflow(ref ClassStack stack, int classIndex)
    {
        int capacity = stack.Capacity;
        int minimum = MinimumCapacity(_capacities[classIndex]);
        if (++stack.Overflows >= OverflowsBeforeShrink && capacity > minimum)
        {
            capacity = Math.Max(minimum, capacity - Math.Max(1, capacity / 4));
            stack.Overflows = 0;
        }

        return capacity;
    }
}
