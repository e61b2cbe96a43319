using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// An <see cref="ArrayPool{T}"/> of managed byte arrays, a drop-in for <see cref="ArrayPool{T}.Shared"/> that keeps
/// deep stacks per thread (bursts of 100 rents stay on the fast path), moves arrays returned on another thread back
/// to the renting threads, rounds lengths to finer classes above 4 KB, and drops arrays that sit idle.
/// </summary>
/// <remarks>
/// <para>
/// Each thread keeps a stack of free arrays per size class. The common rent and return touch only that stack: no
/// lock, no interlocked instruction. A full stack moves its colder half to a shared depot for the class, and an
/// empty one refills half its capacity from there, so a thread that only returns (a Pipe's reader) feeds the threads
/// that rent instead of hoarding their arrays.
/// </para>
/// <para>
/// Arrays are handed out uninitialized (their old contents, or garbage); at or above
/// <see cref="TieredArrayPoolOptions.PinnedThreshold"/> they live on the pinned object heap. As with the runtime's
/// pool, returning an array twice, or using it after returning it, corrupts whoever rents it next.
/// </para>
/// </remarks>
public sealed partial class TieredArrayPool : ArrayPool<byte>, IReclaimablePool
{
    /// <summary>The name of <see cref="Shared"/>: not the default name, so a pool left at it reports under its own.</summary>
    public const string SharedName = "shared";

    // Made at its first read (see MakeShared).
    private static TieredArrayPool? s_shared;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    // The cache this thread used last: nearly every process rents from one pool, so the fast path is one
    // thread-static read and one compare.
    [ThreadStatic]
    private static ArrayThreadCache? t_lastCache;
#pragma warning restore IDE1006

    private readonly int _maxPooledLength;
    private readonly int[] _classLengths;

    // Every class chosen, for the trims of them all (made here: a trim must allocate nothing, see DropCached).
    private readonly bool[] _everyClass;

    // How many arrays a thread's stack of each class holds.
    private readonly int[] _capacities;
    private readonly SizeClassDepot<byte[]>[] _depots;
    private readonly long _sharedCacheMaxBytes;
    private readonly int _pinnedThreshold;

    private readonly ThreadCacheRegistry<ArrayThreadCache> _registry;

    // Null with an infinite IdleReleaseDelay.
    private readonly IdleReleaser? _idleReleaser;

    // The registry's id, which this pool's thread caches carry (see ArrayThreadCache).
    private readonly long _cacheId;
    private readonly long[] _retiredHits;
    private readonly long[] _retiredMisses;
    private readonly long[] _retiredReturns;
    private readonly ClassIdleness _idleness;

    // The idle tick's per-class counts and idle classes, reused tick after tick (see ReleaseIdle).
    private readonly ClassCounts[] _tickCounts;
    private readonly bool[] _tickIdle;

    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap (56 bytes),
    // and a trim waiting for another (the pressure watch's, the idle tick's, a caller's) runs when the heap nears its
    // limit, where that allocation can throw before anything is dropped (ContendedArrayPoolTrimSafetyTests).
    private readonly object _trimLock = new();
    private long _depotBytes;
    private long _evictedBytes;
    private long _unpooledRents;
    private long _unpooledReturns;
    private long _unpooledBytesRented;
    private long _unpooledBytesReturned;

    /// <summary>Creates a pool with the default <see cref="TieredArrayPoolOptions"/>.</summary>
    public TieredArrayPool()
        : this(new TieredArrayPoolOptions())
    {
    }

    /// <summary>Creates a pool with the given options (copied: later changes to <paramref name="options"/> do not affect it).</summary>
    /// <remarks>
    /// A pool nobody references is collected, whichever threads used it, and the arrays their caches held for it go
    /// with it; all its pools share one timer per <see cref="TimeProvider"/>.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is out of range; the exception names it.</exception>
    public TieredArrayPool(TieredArrayPoolOptions options)
    {
        // Finalized only once built: a constructor that throws leaves nothing for the finalizer to empty.
        GC.SuppressFinalize(this);
        ArgumentNullException.ThrowIfNull(options);
        LibraryStatics.EnsureMade();
        options = options.Clone();
        options.Validate();

        int classCount = ArraySizeClasses.IndexOf(options.MaxArrayLength) + 1;
        _maxPooledLength = ArraySizeClasses.LengthOf(classCount - 1);
        _classLengths = new int[classCount];
        _everyClass = new bool[classCount];
        Array.Fill(_everyClass, true);
        _capacities = new int[classCount];
        _depots = new SizeClassDepot<byte[]>[classCount];
        for (int i = 0; i < classCount; i++)
        {
            _classLengths[i] = ArraySizeClasses.LengthOf(i);
            // A class longer than the byte budget still keeps one array per thread, as the runtime's pool does: a
            // steady rent and return of a large array then never takes the depot's lock. Idle release takes it back.
            int byBytes = options.ThreadCacheMaxBytesPerClass == 0 ? 0 : Math.Max(1, options.ThreadCacheMaxBytesPerClass / _classLengths[i]);
            _capacities[i] = Math.Min(options.ThreadCacheMaxArrays, byBytes);
            _depots[i] = new SizeClassDepot<byte[]>();
        }

        _retiredHits = new long[classCount];
        _retiredMisses = new long[classCount];
        _retiredReturns = new long[classCount];
        var clock = new IdleClock(options.IdleReleaseDelay, options.TimeProvider);
        _idleness = new ClassIdleness(classCount, clock);
        _tickCounts = new ClassCounts[classCount];
        _tickIdle = new bool[classCount];
        _sharedCacheMaxBytes = options.SharedCacheMaxBytes;
        _pinnedThreshold = options.PinnedThreshold;
        Name = options.Name;
        _registry = new ThreadCacheRegistry<ArrayThreadCache>(RetireUnsynchronized);
        _cacheId = _registry.Id;
        try
        {
            if (options.IdleReleaseDelay != Timeout.InfiniteTimeSpan)
            {
                // Kept by the clock's shared ticker, and holding this pool weakly: an array pool is never disposed.
                // Kept here too, to be paused when the library's context unloads (see ContextUnload).
                _idleReleaser = new IdleReleaser(this, clock, options.TimeProvider);
            }

            // The name the meter reports it under, numbered when another live pool has it: what Name is documented as.
            Name = PoolMetrics.Register(this);
            MemoryPressureWatcher.Start();
        }
        catch
        {
            // The registry holds a slot of every thread's cache table (see TieredMemoryPool's constructor): a pool that
            // fails to be made (a clock that throws, no managed memory left) gives it back.
            _registry.ReleaseSlot();
            PoolMetrics.Forget(this);
            throw;
        }

        GC.ReRegisterForFinalize(this);
    }

    /// <summary>
    /// Lets go of the arrays of a pool nobody references: a thread's last-used cache would otherwise hold them until
    /// the thread used another pool. Then gives the thread-cache slot back for later pools.
    /// </summary>
    /// <remarks>
    /// On the finalizer thread, which is fine here: dropping arrays makes no system call, and the only locks are this
    /// pool's, which nobody can wait on for long once the pool is unreachable. Owners racing it are safe as they are
    /// with any trim (see <see cref="ArrayThreadCache"/>).
    /// </remarks>
    ~TieredArrayPool()
    {
        try
        {
            Trim();
        }
        catch (Exception error)
        {
            // On the finalizer thread, where an exception would end the process (see BackgroundFailures).
            BackgroundFailures.Report("trimming an array pool dropped without dispose", error);
        }
        finally
        {
            _registry.ReleaseSlot();
        }
    }

    /// <summary>The process-wide pool, with default options but its name (<see cref="SharedName"/>).</summary>
    /// <exception cref="OutOfMemoryException">Its first read found no managed memory to make it; a later read tries again.</exception>
    public static new TieredArrayPool Shared => Volatile.Read(ref s_shared) ?? MakeShared();

    /// <summary>
    /// Makes <see cref="Shared"/> at its first read, and again at the next read if that failed: made by a static
    /// initializer, it was made by the type initializer that every pool's first rent or return runs (reading
    /// <c>t_lastCache</c>), and then by one of its own; either, run out of managed memory at the GC heap limit, failed
    /// for good, and every later read threw TypeInitializationException (FirstArrayRentAtTheHeapLimitSafetyTests,
    /// SharedPoolsAtTheHeapLimitSafetyTests). Two threads' first reads may both make one; the pool that loses is
    /// dropped, and collected as any pool nobody references.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static TieredArrayPool MakeShared()
    {
        var made = new TieredArrayPool(new TieredArrayPoolOptions { Name = SharedName });
        return Interlocked.CompareExchange(ref s_shared, made, null) ?? made;
    }

    /// <summary>The pool's name: the owner tag of its metrics, numbered when another live pool has it (<see cref="TieredArrayPoolOptions.Name"/>).</summary>
    public string Name { get; }

    /// <summary>The longest pooled array: <see cref="TieredArrayPoolOptions.MaxArrayLength"/> rounded up to its size class.</summary>
    public int MaxPooledLength => _maxPooledLength;

    bool IReclaimablePool.IsDisposed => false;

    bool IReclaimablePool.HoldsManagedMemory => true;

    /// <summary>
    /// Memory runs short: every cached array is dropped for the GC, as <see cref="Trim"/> does, and the GC is asked to
    /// give them back to the OS (dropped, they stayed committed until a collection that native growth never set off).
    /// </summary>
    void IReclaimablePool.TrimUnderPressure() => _ = PinnedMemoryCollector.AfterDrop(DropCached(_everyClass));

    /// <summary>Rents an array of at least <paramref name="minimumLength"/> bytes, uninitialized.</summary>
    /// <param name="minimumLength">Bytes needed; 0 gives the same empty array every time.</param>
    /// <returns>
    /// An array of the size class of <paramref name="minimumLength"/>, or, above <see cref="MaxPooledLength"/>, of exactly
    /// <paramref name="minimumLength"/> bytes.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minimumLength"/> is negative.</exception>
    /// <exception cref="OutOfMemoryException">
    /// <paramref name="minimumLength"/> is above <see cref="Array.MaxLength"/> (as <see cref="ArrayPool{T}.Shared"/>
    /// throws it), or the managed heap has no room for the array.
    /// </exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override byte[] Rent(int minimumLength)
    {
        if ((uint)(minimumLength - 1) < (uint)_maxPooledLength)
        {
            int classIndex = ArraySizeClasses.IndexOf(minimumLength);
            ArrayThreadCache? cache = t_lastCache;
            if (cache is not null && cache.RegistryId == _cacheId)
            {
                // No hit counter here: the statistics derive the hits from the returns (see NetTransfers).
                ref ArrayClassStack stack = ref cache.StackOf(classIndex);
                if (stack.TryPop(stack.Items, out byte[] array))
                {
                    return array;
                }
            }

            return RentSlow(classIndex);
        }

        return RentOutsideClasses(minimumLength);
    }

    /// <summary>Returns an array to the pool, on whatever thread.</summary>
    /// <param name="array">
    /// An array from <see cref="Rent"/>. Any array of a class length is accepted, as <see cref="ArrayPool{T}.Shared"/>
    /// accepts it, and handed out again: one made elsewhere at or above <see cref="TieredArrayPoolOptions.PinnedThreshold"/>
    /// is then handed out as if it were pinned, which it may not be.
    /// </param>
    /// <param name="clearArray">Whether to zero the array first, so the next renter cannot read its contents.</param>
    /// <exception cref="ArgumentNullException"><paramref name="array"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">
    /// The length of <paramref name="array"/> is not a class length and not above <see cref="MaxPooledLength"/>, so the
    /// pool did not hand it out. It is cleared first when <paramref name="clearArray"/> is set, and not kept.
    /// </exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void Return(byte[] array, bool clearArray = false)
    {
        if (array is null)
        {
            ThrowHelper.ThrowReturnedArrayNull(array);
        }

        int length = array.Length;
        if ((uint)(length - 1) < (uint)_maxPooledLength)
        {
            int classIndex = ArraySizeClasses.ExactIndexOf(length);
            if (clearArray)
            {
                Array.Clear(array);
            }

            if (classIndex < 0)
            {
                ThrowHelper.ThrowArrayNotFromPool(array);
            }

            ArrayThreadCache? cache = LastCacheOrNullOutOfMemory();
            if (cache is not null && cache.RegistryId == _cacheId)
            {
                ref ArrayClassStack stack = ref cache.StackOf(classIndex);
                if (stack.TryPush(stack.Items, array))
                {
                    stack.Returns++;
                    return;
                }
            }

            ReturnSlow(array, classIndex);
        }
        else if (length != 0)
        {
            ReturnUnpooled(array, clearArray);
        }
    }
}
