using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A <see cref="MemoryPool{T}"/> of native memory, routed by size to four tiers: small (under 1 KB) and medium (1 to
/// 16 KB) from size classes with per-thread caches, large (to 2 MB) from cached mmap regions, huge (above 2 MB) from
/// hugepage arenas.
/// </summary>
/// <remarks>
/// <para>
/// Every buffer is native memory held by a pooled <see cref="Native.NativeMemoryManager"/>: it never moves, so
/// pinning it for socket I/O is free. The <see cref="IMemoryOwner{T}.Memory"/> handed out is the whole size class,
/// at least as long as asked.
/// </para>
/// <para>
/// By default every rent gets an owner of its own (32 bytes; <see cref="MemoryPool{T}.Shared"/> allocates 24):
/// a second dispose of it, at any time and on any thread, is ignored, and it and every <see cref="Memory{T}"/>
/// taken from it throw <see cref="ObjectDisposedException"/> after its dispose, also once the block is rented again.
/// With <see cref="TieredMemoryPoolOptions.ReuseOwners"/> the pooled manager itself is handed out (nothing allocated
/// per rent), for callers that dispose every owner exactly once.
/// </para>
/// <para>
/// Memory returned less than one <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/> ago, and memory reclaimed
/// from a leaked owner, is never unmapped before that delay, whatever trims, caps or disposal ask: a stale
/// <see cref="Span{T}"/> cannot crash the process.
/// </para>
/// </remarks>
public sealed partial class TieredMemoryPool : MemoryPool<byte>, IReclaimablePool
{
    /// <summary>The size <see cref="Rent"/> gives for <c>-1</c>, as <see cref="MemoryPool{T}.Shared"/> does.</summary>
    public const int DefaultBufferSize = 4096;

    /// <summary>The name of <see cref="Shared"/>: not the default name, so a pool left at it reports under its own.</summary>
    public const string SharedName = "shared";

    private readonly SmallTier _small;
    private readonly MediumTier _medium;
    private readonly LargeTier _large;
    private readonly HugeTier _huge;
    private readonly PageSource _pages;
    private readonly int _mmapThreshold;
    private readonly int _hugepageThreshold;
    private readonly int _maxBufferSize;
    private readonly RetainedCap _retainedCap;

    // Trims every tier, one trim at a time (the trims of rents at MaxBytesInUse, and Trim).
    private readonly LimitTrim _limitTrim;

    // Under memory pressure every idle byte is due, but a trim that left some behind gave all it could: the next
    // waits until the pool is used again, as the cap's do.
    private readonly RetainedCap _pressureCap = new(0);
    private readonly IdleClock _clock;
    private readonly IdleReleaser _idleReleaser;
    private readonly Func<bool> _nothingWaiting;
    private readonly bool _releasesIdleMemory;
    private readonly LeakQuarantine _quarantine;
    private readonly DeferredUnmaps _unmaps;
    private readonly PoolDiagnostics? _diagnostics;
    private readonly TieredMemoryPoolOptions _options;
    private readonly OwnerCounters _owners = new();

    // How many sizes from 1 KB up take the inlined medium path: all medium sizes normally, none in diagnostic mode,
    // which sends every rent through RentOther to be wrapped. This keeps the diagnostic check off the fast path.
    private readonly uint _mediumFastSizes;

    // How many sizes from 1 byte up take the inlined small path, after the medium check: all small sizes normally,
    // none in diagnostic mode. Rent(0) and Rent(-1) fall outside it and go through RentOther.
    private readonly uint _smallFastSizes;

    // How many sizes above the mmap threshold take the region path in Rent, without RentOther's frame: all region
    // sizes up to MaxBufferSize normally, none in diagnostic mode.
    private readonly uint _regionFastSizes;

    // Whether the pooled manager itself is handed out (ReuseOwners), instead of an owner per rent.
    private readonly bool _reuseOwners;
    private int _disposed;
    private long _pressureTrims;

    // Rents plus returns over every tier at the idle releaser's last tick: unchanged means the pool was quiet.
    private long _activityAtLastTick = -1;

    // Set once Dispose has handed every tier's memory to the quarantine or the deferred unmaps: from then on the
    // timer may pause whenever nothing waits.
    private volatile bool _drainingAfterDispose;

    /// <summary>Creates a pool with the default <see cref="TieredMemoryPoolOptions"/>.</summary>
    public TieredMemoryPool()
        : this(new TieredMemoryPoolOptions())
    {
    }

    /// <summary>Creates a pool with the given options (copied: later changes to <paramref name="options"/> do not affect it).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is out of range; the exception names it.</exception>
    public TieredMemoryPool(TieredMemoryPoolOptions options)
    {
        // Finalized only once built: a constructor that throws leaves no half-made tiers for the finalizer to dispose.
        GC.SuppressFinalize(this);
        ArgumentNullException.ThrowIfNull(options);
        LibraryStatics.EnsureMade();
        options = options.Clone();
        options.ApplyMemoryBudget(MemoryBudget.Current);
        options.Validate();
        _options = options;

        _mmapThreshold = options.MmapThreshold;
        _hugepageThreshold = options.HugepageThreshold;
        _maxBufferSize = options.MaxBufferSize;
        _retainedCap = new RetainedCap(options.MaxRetainedBytes);
        _pages = new PageSource(options.ResolvePageAllocator(), options.ResolveFallbackPageAllocator(), options.MaxBytesInUse, options.UseLazyFree);
        _diagnostics = PoolDiagnostics.Create(options);
        // The fast path must not serve what MaxBufferSize forbids: it stops at the smaller of the two limits.
        _mediumFastSizes = _diagnostics is null ? (uint)(Math.Min(_mmapThreshold, _maxBufferSize) - MediumTier.MinSize + 1) : 0;
        _smallFastSizes = _diagnostics is null ? (uint)Math.Min(SmallTier.MaxSize, _maxBufferSize) : 0;
        _regionFastSizes = _diagnostics is null ? (uint)Math.Max(_maxBufferSize - _mmapThreshold, 0) : 0;
        _reuseOwners = options.ReuseOwners;

        // The clock runs even when background release is off: it times the quarantine of leaked blocks and the
        // delay before memory let go of may be unmapped.
        var clock = _clock = new IdleClock(options.IdleReleaseDelay, options.TimeProvider);
        _releasesIdleMemory = options.IdleReleaseDelay != Timeout.InfiniteTimeSpan;
        _quarantine = new LeakQuarantine(clock);
        _unmaps = new DeferredUnmaps(_pages, clock);
        _pages.WaitingUnmaps = _unmaps;
        try
        {
            _small = new SmallTier(_pages, clock, _unmaps, _quarantine, options.ThreadCacheMaxBuffers, options.ThreadCacheMaxBytes, options.AdaptiveCaches);
            _medium = new MediumTier(_pages, clock, _unmaps, _quarantine, options.MmapThreshold, options.ThreadCacheMaxBuffers, options.ThreadCacheMaxBytes, options.AdaptiveCaches, SegmentedCounters);
            _large = new LargeTier(_pages, clock, _quarantine, _unmaps, _diagnostics is not null, options.MmapThreshold, options.HugepageThreshold, options.RegionCacheMaxCount, options.RegionCacheMaxBytes, options.AdaptiveCaches);
            _huge = new HugeTier(_pages, clock, _quarantine, _unmaps, _diagnostics is not null, options.HugepageThreshold, options.MaxBufferSize, options.EnableHugepages && !options.UsePinnedArrays, options.HugeRegionCacheMaxCount, options.HugeRegionCacheMaxBytes, options.AdaptiveCaches);
            _idleReleaser = new IdleReleaser(this, clock, options.TimeProvider);
            _quarantine.Waiting = _unmaps.Waiting = _idleReleaser.Wake;
            _nothingWaiting = () => _quarantine.IsEmpty && _unmaps.IsEmpty;

            Name = options.Name;

            // The tiers, not the pool: every rented block reaches the page source through its tier, and must not keep
            // a dropped pool reachable (the pool's finalizer is what gives its memory back).
            SmallTier small = _small;
            MediumTier medium = _medium;
            LargeTier large = _large;
            HugeTier huge = _huge;
            DeferredUnmaps unmaps = _unmaps;
            var limitTrim = new LimitTrim(
                () => RetainedAndActivityOf(small, medium, large, huge).Activity,
                pinnedArraysAtOnce => TrimEveryTier(small, medium, large, huge, unmaps, pinnedArraysAtOnce));
            _pages.ReleaseIdleMemory = limitTrim.Run;
            _limitTrim = limitTrim;
            // The name the meter reports it under, numbered when another live pool has it: what Name is documented as.
            Name = PoolMetrics.Register(this);
            MemoryPressureWatcher.Start();
        }
        catch
        {
            // Each tier holds a slot of every thread's cache table from its making: a pool that fails to be made (a
            // clock that throws, no managed memory left) gives them back, or every later thread's table stays as
            // long as the highest slot ever taken. The tiers hold nothing else yet. The pool counts as disposed for a
            // releaser already started, which ticks it until it is collected, and is forgotten by the meter.
            Volatile.Write(ref _disposed, Disposed);
            DisposeTiers();
            PoolMetrics.Forget(this);
            throw;
        }

        GC.ReRegisterForFinalize(this);
    }

    /// <summary>The pool's name: the owner tag of its metrics, numbered when another live pool has it (<see cref="TieredMemoryPoolOptions.Name"/>).</summary>
    public string Name { get; }

    /// <summary>The largest buffer <see cref="Rent"/> accepts.</summary>
    public override int MaxBufferSize => _maxBufferSize;

    /// <summary>Rents a buffer of at least <paramref name="minBufferSize"/> bytes.</summary>
    /// <param name="minBufferSize">
    /// Bytes needed: from 0 to <see cref="MaxBufferSize"/>, or -1 for <see cref="DefaultBufferSize"/>. 0 gives the
    /// smallest buffer (16 bytes) rather than an empty one, so a writer that asks for "any" memory can make progress.
    /// </param>
    /// <returns>An owner whose <see cref="IMemoryOwner{T}.Memory"/> is the whole size class; dispose it to return the buffer.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minBufferSize"/> is below -1 or above <see cref="MaxBufferSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    /// <exception cref="InsufficientMemoryException">The OS has no memory for the buffer, even after the pool freed its caches.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        // Medium first, inlined: it holds the default size and Kestrel's and Pipe's usual segments. The other tiers'
        // fast paths are methods of their own, each with its helpers inlined in it: inlined here as well, the whole
        // of Rent grew past what a caller that inlines it can take in, and that caller's inlining stopped halfway,
        // leaving calls to the small helpers on every path (measured: 64 KB from 9.7 to 18 ns).
        if ((uint)(minBufferSize - MediumTier.MinSize) < _mediumFastSizes)
        {
            // The owner before the block, in every path: out of managed memory for it, the rent has taken nothing.
            BlockOwner? owner = _reuseOwners ? null : new BlockOwner();
            Native.NativeMemoryManager block = _medium.Rent(minBufferSize);
            return owner is null ? block : owner.Hold(block);
        }

        return RentOutsideMedium(minBufferSize);
    }

    /// <summary>A small or region size's fast path, else <see cref="RentOther"/>.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private IMemoryOwner<byte> RentOutsideMedium(int minBufferSize)
    {
        bool small = (uint)(minBufferSize - 1) < _smallFastSizes;
        if (!small && (uint)(minBufferSize - _mmapThreshold - 1) >= _regionFastSizes)
        {
            return RentOther(minBufferSize);
        }

        BlockOwner? owner = _reuseOwners ? null : new BlockOwner();
        Native.NativeMemoryManager block = small ? _small.Rent(minBufferSize)
            : minBufferSize <= _hugepageThreshold ? _large.Rent(minBufferSize)
            : _huge.Rent(minBufferSize);
        return owner is null ? block : owner.Hold(block);
    }

    /// <summary>A snapshot of what each tier has done and holds.</summary>
    public TieredMemoryPoolStatistics GetStatistics() => new()
    {
        Small = _small.GetStatistics(),
        Medium = _medium.GetStatistics(),
        Large = _large.GetStatistics(),
        Huge = _huge.GetStatistics(),
        Backend = _pages.Allocator.Name,
        MmapCalls = _pages.MapCalls,
        MunmapCalls = _pages.UnmapCalls,
        MappingsReused = _pages.MappingsReused,
        HugepageBytes = _pages.HugepageBytes,
        FallbackAllocations = _pages.Fallbacks,
        LeaksReclaimed = _quarantine.Reclaimed,
        BytesQuarantined = _quarantine.Bytes,
        BytesAwaitingRelease = _unmaps.Bytes,
        UnmapFailures = _pages.UnmapFailures,
        MemoryLimit = MemoryBudget.Current.Limit,
        RetainedBytesCap = _options.MaxRetainedBytes,
        PressureTrims = Volatile.Read(ref _pressureTrims),
        RentsRefused = _pages.RentsRefused,
        DoubleDisposes = _diagnostics?.DoubleDisposes ?? 0,
        RentsByOwner = _owners.Snapshot(),
        LeaksDetected = _diagnostics?.Leaks ?? 0,
        SizeHistogram = SizeHistogram(),
        Segmented = SegmentedCounters.Snapshot(),
    };

    /// <summary>
    /// Plain-language hints from what the pool has seen: settings that would serve this traffic with fewer system
    /// calls, fewer misses or fewer TLB misses (for example, reserving hugepages the huge tier could use). Empty when
    /// there is nothing to say or too little traffic to say it.
    /// </summary>
    public IReadOnlyList<string> GetAdvice() => PoolAdvice.From(GetStatistics(), _options, Native.HugePageInfo.Read());

    private List<SizeClassStatistics> SizeHistogram()
    {
        var histogram = new List<SizeClassStatistics>();
        _small.AddClassStatistics(histogram);
        _medium.AddClassStatistics(histogram);
        _large.AddClassStatistics(histogram);
        _huge.AddClassStatistics(histogram);
        return histogram;
    }

    /// <summary>
    /// Gives every idle byte back to the OS now: cached regions and slabs whose blocks are all free leave the pool,
    /// and the pages under other free blocks are dropped. Buffers in use are not touched, nor is memory reclaimed from
    /// leaked owners, which waits out its quarantine. Memory returned less than one
    /// <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/> ago has its pages dropped now (resident memory falls
    /// at once) and is unmapped when the delay is over, so a stale <see cref="Span{T}"/> never faults. The pool also
    /// does this on its own for memory idle longer than the delay, and when the GC reports high memory load.
    /// </summary>
    public void Trim() => _limitTrim.RunNow();

    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    bool IReclaimablePool.IsDisposed => IsDisposed;

    /// <summary>
    /// Pinned arrays, or a cache whose blocks' managers hold a share of the heap worth a trim. Every block a slab tier
    /// carved keeps its manager on the managed heap (about <see cref="ManagedBytesPerCachedBlock"/> bytes) until its
    /// slab goes: a native pool caching a million 64-byte buffers held 64 MB of native memory and 85 MB of the heap,
    /// which its trim gives back, while a heap near its hard limit left it alone (NativePoolManagedMetadataPressureTests).
    /// Under <see cref="PinnedMemoryCollector.MinimumBytes"/> of it, a native pool is left alone, as the heap's limit is
    /// not native memory's (ManagedHeapPressureTests).
    /// </summary>
    bool IReclaimablePool.HoldsManagedMemory => _pages.Allocator is Native.PinnedArrayPageAllocator || CachedBlocksHoldMuchOfTheHeap();

    /// <summary>Managed bytes a slab tier's cached block keeps at least: its manager, and its place in the caches.</summary>
    private const long ManagedBytesPerCachedBlock = 80;

    /// <summary>Whether the blocks cached by the slab tiers keep at least <see cref="PinnedMemoryCollector.MinimumBytes"/> of the managed heap.</summary>
    private bool CachedBlocksHoldMuchOfTheHeap()
    {
        List<SizeClassStatistics> classes;
        try
        {
            classes = [];
            _small.AddClassStatistics(classes);
            _medium.AddClassStatistics(classes);
        }
        catch (OutOfMemoryException)
        {
            // Asked when the heap nears its limit: out of it already, a trim is what the heap needs.
            return true;
        }

        long cached = 0;
        foreach (SizeClassStatistics row in classes)
        {
            cached += row.Cached;
        }

        return cached * ManagedBytesPerCachedBlock >= PinnedMemoryCollector.MinimumBytes;
    }

    /// <summary>Ticks of the idle clock so far (tests see the timer pause and wake with it).</summary>
    internal long IdleTicks => _clock.Epoch;

    /// <summary>The calling thread's medium cache capacity for <paramref name="size"/> (tests watch the adaptation with it).</summary>
    internal int ThreadCacheCapacity(int size) => _medium.CapacityOnThisThread(size);

    /// <summary>
    /// As <see cref="Rent"/>, with an owner of the rent's own whatever <see cref="TieredMemoryPoolOptions.ReuseOwners"/>
    /// says: for the views <see cref="TieredMemoryPoolFactory"/> hands Kestrel, which files one owner in two places when
    /// a rent of its is refused (a cap, or the OS out of memory) and disposes it twice; a reused owner's second dispose
    /// would return a block another connection rented since.
    /// </summary>
    internal IMemoryOwner<byte> RentWithAnOwnerOfItsOwn(int minBufferSize)
    {
        if (!_reuseOwners)
        {
            return Rent(minBufferSize);
        }

        // The owner before the block, as every rent makes it: out of managed memory for it, nothing has been taken.
        var owner = new BlockOwner();
        IMemoryOwner<byte> rented = Rent(minBufferSize);

        // Anything but the bare block is a diagnostic owner, one per rent already.
        return rented is Native.NativeMemoryManager block ? owner.Hold(block) : rented;
    }

    /// <summary>The rent counter of one owner of pools created by <see cref="TieredMemoryPoolFactory"/>.</summary>
    internal OwnerCounter CounterFor(string owner) => _owners.CounterFor(owner);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private IMemoryOwner<byte> RentOther(int size)
    {
        if (_diagnostics is not null)
        {
            (Native.NativeMemoryManager tracked, string tier) = RentBlock(size);
            return _diagnostics.Track(tracked, tier);
        }

        BlockOwner? owner = _reuseOwners ? null : new BlockOwner();
        Native.NativeMemoryManager block = RentBlock(size).Block;
        return owner is null ? block : owner.Hold(block);
    }

    private (Native.NativeMemoryManager Block, string Tier) RentBlock(int size)
    {
        if (size == -1)
        {
            size = DefaultBufferSize;
        }
        else if ((uint)size > (uint)_maxBufferSize)
        {
            ThrowHelper.ThrowRentSizeOutOfRange(size, _maxBufferSize);
        }

        return size switch
        {
            <= SmallTier.MaxSize => (_small.Rent(Math.Max(size, 1)), "small"),
            _ when size <= _mmapThreshold => (_medium.Rent(size), "medium"),
            _ when size <= _hugepageThreshold => (_large.Rent(size), "large"),
            _ => (_huge.Rent(size), "huge"),
        };
    }
}
