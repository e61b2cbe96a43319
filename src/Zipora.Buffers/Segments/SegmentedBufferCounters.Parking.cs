using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The threads' spares: each thread keeps a free tracker and a segment object of the pool's segmented buffers, and
/// the segment keeps the block of a message that ended in one medium block, so the next such message on the thread
/// rents nothing and returns nothing (see <see cref="SegmentThreadCache"/>).
/// </summary>
/// <remarks>
/// A parked block is the pool's memory, cached for one thread as its medium tier's thread caches are: every trim of the
/// medium tier (<see cref="TieredMemoryPool.Trim"/>, the idle release, a cap, memory pressure) takes the parked blocks
/// back first (<see cref="ReleaseParkedBlocks"/>), the pool's disposal for good, and a thread's exit hands its
/// spares back. The statistics count a parked block as returned and cached, not in use.
/// </remarks>
internal sealed partial class SegmentedBufferCounters
{
#pragma warning disable IDE1006 // The runtime's t_prefix for thread-statics, which the s_ rule cannot tell apart.
    // The calling thread's cache of whichever pool it last used: one thread-local lookup and an id compare on the fast
    // path, where the registry's own lookup indexes a per-thread table.
    [ThreadStatic]
    private static SegmentThreadCache? t_last;
#pragma warning restore IDE1006

    // Made at the first return that parks (a pool whose buffers never end on a thread takes no slot of the threads'
    // tables, and a pool whose constructor throws takes none to give back); under the parking lock.
    private ThreadCacheRegistry<SegmentThreadCache>? _registry;

    // The registry's id, 0 (no cache's) until it is made.
    private long _registryId;

    // The parks of exited threads' caches, per class, folded in as each is retired (under the registry's lock): the idle
    // release dates activity by a running figure that must only grow, or an exit that took parks out of it and as many
    // rents and returns after it would bring back a figure already seen, and that activity would be missed.
    private readonly long[] _retiredParks = new long[ClassStacks.MaxClasses];

    // Serializes trims of the parked blocks: each closes the parking, empties every cache, and opens it again.
    private readonly object _parkingLock = new();

    // Closed while a trim empties the caches (owners then neither park nor take a block), and for good once the pool
    // is disposed. Read by an owner inside its handshake.
    private volatile bool _parkingClosed;
    private bool _closedForGood;

    /// <summary>
    /// A free tracker, held from now on by the caller with <paramref name="ticket"/> and <paramref name="token"/> (see
    /// <see cref="SegmentedBufferTracker.Take"/>), and the thread's spare segment, which may hold a block, in
    /// <paramref name="spare"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SegmentedBufferTracker Take(out int ticket, out object token, out BufferSegment? spare)
    {
        SegmentThreadCache? cache = t_last;
        if (cache is null || cache.RegistryId != _registryId)
        {
            cache = FindThisThreadsCache(create: false);
        }

        SegmentedBufferTracker? tracker = null;
        spare = null;
        if (cache is not null)
        {
            tracker = cache.Tracker;
            cache.Tracker = null;
            Volatile.Write(ref cache.InUse, 1);
            if (!_parkingClosed)
            {
                spare = cache.Segment;
                cache.Segment = null;
            }

            Volatile.Write(ref cache.InUse, 0);
            if (spare is { Capacity: > 0 })
            {
                // The buffer holds it from here: a leaked buffer's block is then reclaimed by its finalizer, as a rented one.
                spare.UnparkBlock();
            }
        }

        if (tracker is null)
        {
            tracker = TakeShared();
        }
        else
        {
            tracker.IsParked = false;
        }

        ticket = tracker.Take(out token);
        return tracker;
    }

    /// <summary>
    /// Keeps <paramref name="tracker"/>, just given back by its buffer, and <paramref name="spare"/> (an empty segment,
    /// which may hold a block of the medium tier) for the thread's next buffer. Throws nothing.
    /// </summary>
    public void Return(SegmentedBufferTracker tracker, BufferSegment? spare)
    {
        SegmentThreadCache? cache;
        try
        {
            // A thread's first return is the runtime's allocation of its thread-statics and of its cache: out of managed
            // memory either throws, inside a buffer's dispose, after the tracker was given back (lost for good had it
            // thrown). The shared list takes the tracker without allocating, and the block goes back to its tier.
            cache = t_last;
            if (cache is null || cache.RegistryId != _registryId)
            {
                cache = FindThisThreadsCache(create: true);
            }
        }
        catch (OutOfMemoryException)
        {
            cache = null;
        }

        if (cache is null)
        {
            ReturnShared(tracker);
            Release(spare);
            return;
        }

        if (cache.Tracker is null)
        {
            tracker.IsParked = true;
            cache.Tracker = tracker;
        }
        else
        {
            ReturnShared(tracker);
        }

        if (spare is not null)
        {
            Volatile.Write(ref cache.InUse, 1);
            // A segment with a block takes the place of an empty one (a trim leaves the segment objects it emptied).
            BufferSegment? replaced = cache.Segment;
            if (!_parkingClosed && (replaced is null || (replaced.Capacity == 0 && spare.Capacity != 0)))
            {
                if (spare.Capacity != 0)
                {
                    // Counted here, not where a buffer takes the block: the take is on every buffer's construction.
                    spare.ParkBlock();
                    ref long parks = ref cache.Parks[MediumClasses.ClassIndexOfBlock(spare.Capacity)];
                    Volatile.Write(ref parks, parks + 1);
                }

                cache.Segment = spare;
                spare = replaced;
            }

            Volatile.Write(ref cache.InUse, 0);
            Release(spare);
        }
    }

    /// <summary>
    /// Gives every block parked in a thread's cache back to its tier (the segment objects stay), before the medium tier
    /// trims; <paramref name="forGood"/>, for the pool's disposal, closes the parking for good: a block let go of later
    /// goes straight back to its tier.
    /// </summary>
    public void ReleaseParkedBlocks(bool forGood)
    {
        lock (_parkingLock)
        {
            if (_closedForGood)
            {
                return;
            }

            _parkingClosed = true;
            bool emptied = false;
            try
            {
                // Under the handshake: once a cache's owner is out, it stays out (it sees the parking closed) until this ends.
                if (_registry is { } registry)
                {
                    HandshakeCache.EmptyEach(registry, 0, _emptyCache);
                }

                emptied = true;
            }
            finally
            {
                // Closed for good only once every cache was emptied: a disposal that stopped partway is done again in full.
                _closedForGood = forGood && emptied;
                _parkingClosed = _closedForGood;
            }
        }

        if (forGood)
        {
            _registry?.ReleaseSlot();
        }
    }

    /// <summary>
    /// Adds the blocks parked in the threads' caches now to <paramref name="byClass"/>, per medium class, then runs
    /// <paramref name="countTheTier"/> under the same lock. Racy: exact when the pool is quiet.
    /// </summary>
    /// <remarks>
    /// A trim hands the parked blocks back to their tier as returns under that lock (see <see cref="ReleaseParkedBlocks"/>):
    /// counted apart, a read that found a block parked and then the tier's counts after the hand-back saw it both parked
    /// and returned, and the tier's rents, returns and hits read one too high per block, then fell back at the next read.
    /// </remarks>
    public void CountParkedBlocks<TState>(long[] byClass, TState state, Action<TState> countTheTier)
    {
        if (Volatile.Read(ref _registry) is not { } registry)
        {
            countTheTier(state);
            return;
        }

        lock (registry.Lock)
        {
            foreach (SegmentThreadCache cache in registry.Caches)
            {
                // One read of the segment, whose block a trim may take meanwhile (its capacity then reads 0), and whose
                // owner may take it meanwhile and give it a block of another tier (a large first request swaps its block):
                // such a capacity is no parked block's, and indexed the classes out of their range.
                int capacity = Volatile.Read(ref cache.Segment)?.Capacity ?? 0;
                int classIndex = MediumClasses.ClassIndexOfBlock(capacity);
                if (capacity != 0 && (uint)classIndex < (uint)byClass.Length && MediumClasses.ClassSize(classIndex) == capacity)
                {
                    byClass[classIndex]++;
                }
            }

            // Taken after this lock, as the hand-back takes the tier's (its returns may register the trimming thread's cache).
            countTheTier(state);
        }
    }

    /// <summary>Adds the blocks parked so far on every thread, exited ones included, to <paramref name="byClass"/> (a count that only grows).</summary>
    public void CountParks(long[] byClass)
    {
        if (Volatile.Read(ref _registry) is not { } registry)
        {
            return;
        }

        lock (registry.Lock)
        {
            foreach (SegmentThreadCache cache in registry.Caches)
            {
                for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
                {
                    byClass[classIndex] += Volatile.Read(ref cache.Parks[classIndex]);
                }
            }

            for (int classIndex = 0; classIndex < byClass.Length; classIndex++)
            {
                byClass[classIndex] += _retiredParks[classIndex];
            }
        }
    }

    /// <summary>Gives a spare segment's block, if it holds one, back to its tier, and the segment to the segment cache. Throws nothing for a pool block.</summary>
    public static void Release(BufferSegment? spare)
    {
        if (spare is null)
        {
            return;
        }

        bool heldBlock = spare.TryDetach(out BlockRelease block);
        BufferSegmentCache.Return(spare);
        if (heldBlock)
        {
            block.Dispose();
        }
    }

    /// <summary>The calling thread's cache, registering one if <paramref name="create"/> says so; <see langword="null"/> when there is none or the parking is closed for good.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private SegmentThreadCache? FindThisThreadsCache(bool create)
    {
        ThreadCacheRegistry<SegmentThreadCache>? registry = Volatile.Read(ref _registry);
        SegmentThreadCache? cache = registry?.FindForThisThread();
        if (cache is null && create)
        {
            registry ??= MakeRegistry();
            if (registry is null)
            {
                return null;
            }

            lock (registry.Lock)
            {
                if (_closedForGood)
                {
                    return null;
                }

                cache = new SegmentThreadCache();
                registry.AddForThisThreadUnsynchronized(cache);
            }
        }

        if (cache is not null)
        {
            t_last = cache;
        }

        return cache;
    }

    /// <summary>The registry, made now if it was not; <see langword="null"/> once the parking is closed for good.</summary>
    private ThreadCacheRegistry<SegmentThreadCache>? MakeRegistry()
    {
        lock (_parkingLock)
        {
            if (_closedForGood)
            {
                return null;
            }

            if (_registry is null)
            {
                var registry = new ThreadCacheRegistry<SegmentThreadCache>(RetireUnsynchronized);
                _registryId = registry.Id;
                Volatile.Write(ref _registry, registry);
            }

            return _registry;
        }
    }

    private void RetireExitedThreads()
    {
        if (Volatile.Read(ref _registry) is not { } registry)
        {
            return;
        }

        lock (registry.Lock)
        {
            registry.RetireExitedUnsynchronized();
        }
    }

    /// <summary>Takes a trimmed cache's block, its owner kept out by the handshake.</summary>
    private static void EmptyUnsynchronized(SegmentThreadCache cache)
    {
        if (cache.Segment is { Capacity: > 0 } segment)
        {
            segment.ReleaseParkedBlock();
        }
    }

    /// <summary>Hands an exited thread's spares back: its tracker to the free list, its block to its tier. Under the registry's lock.</summary>
    private void RetireUnsynchronized(SegmentThreadCache cache)
    {
        if (cache.Tracker is { } tracker)
        {
            cache.Tracker = null;
            tracker.IsParked = false;
            ReturnShared(tracker);
        }

        for (int classIndex = 0; classIndex < _retiredParks.Length; classIndex++)
        {
            _retiredParks[classIndex] += Volatile.Read(ref cache.Parks[classIndex]);
        }

        EmptyUnsynchronized(cache);
        cache.Segment = null;
    }
}
