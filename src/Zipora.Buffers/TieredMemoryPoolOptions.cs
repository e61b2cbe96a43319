using System;
using System.Numerics;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>Settings of a <see cref="TieredMemoryPool"/>: where each tier starts and how much each cache may keep.</summary>
/// <remarks>Values are checked when the pool is built; an invalid one throws <see cref="ArgumentException"/> naming the option.</remarks>
public sealed class TieredMemoryPoolOptions
{
    /// <summary>Smallest buffer the pool will hand out as a maximum; the default request size (4096) must fit.</summary>
    internal const int MinimumMaxBufferSize = TieredMemoryPool.DefaultBufferSize;

    // With pinned arrays a buffer is one array of its size class plus 2 MB of alignment slack, which must fit in
    // Array.MaxLength: every request above 1.75 GiB falls in the 2 GiB class, which never fits.
    internal const int MaxPinnedArrayBufferSize = 7 << 28;

    // The caps' defaults outside a memory limit; unset caps are sized to the limit (ApplyMemoryBudget).
    private const long DefaultMaxRetainedBytes = 512L * 1024 * 1024;
    private const long DefaultRegionCacheMaxBytes = 64L * 1024 * 1024;
    private const long DefaultHugeRegionCacheMaxBytes = 256L * 1024 * 1024;

    private long? _maxRetainedBytes;
    private long? _regionCacheMaxBytes;
    private long? _hugeRegionCacheMaxBytes;

    /// <summary>
    /// The owner tag (<c>zipora.buffers.owner</c>) of this pool's metrics; default <c>default</c>
    /// (<see cref="TieredMemoryPool.Shared"/> is <c>shared</c>). A pool made while another live pool reports under its
    /// name reports as <c>name#2</c> (the lowest number free), so each series is one pool's.
    /// </summary>
    public string Name { get; set; } = "default";

    /// <summary>Requests above this size come from mmap-backed regions (the large tier). A power of two from 4 KB to 1 MB; default 16 KB.</summary>
    public int MmapThreshold { get; set; } = 16 * 1024;

    /// <summary>Requests above this size come from hugepage arenas (the huge tier). A power of two above <see cref="MmapThreshold"/>, at most 1 GB; default 2 MB.</summary>
    public int HugepageThreshold { get; set; } = 2 * 1024 * 1024;

    /// <summary>Whether the huge tier asks for reserved hugepages and transparent hugepages; default <see langword="true"/>.</summary>
    public bool EnableHugepages { get; set; } = true;

    /// <summary>
    /// The largest request the pool accepts, at least 4096; default 1 GiB. With <see cref="UsePinnedArrays"/>, at most
    /// 1.75 GiB (1,879,048,192 bytes): a larger buffer would need one array longer than <see cref="Array.MaxLength"/>.
    /// </summary>
    public int MaxBufferSize { get; set; } = 1024 * 1024 * 1024;

    /// <summary>
    /// Caches that follow the demand they see. The region caches keep as many regions as the most buffers of their
    /// tier in use at once over the last one or two <see cref="IdleReleaseDelay"/>s, with <see cref="RegionCacheMaxCount"/>
    /// and <see cref="HugeRegionCacheMaxCount"/> as floors and the byte limits as hard caps; and each medium size
    /// class that saw no rent or return for the delay gives its free blocks back while the other classes stay busy.
    /// Off, the counts are fixed caps and the medium tier gives memory back only when all of it is idle.
    /// Default <see langword="true"/>.
    /// </summary>
    public bool AdaptiveCaches { get; set; } = true;

    /// <summary>Most large-tier regions kept for reuse after they are returned (the floor, with <see cref="AdaptiveCaches"/>); default 64.</summary>
    public int RegionCacheMaxCount { get; set; } = 64;

    /// <summary>
    /// Most bytes of large-tier regions kept for reuse. Default 64 MB, or a 32nd of the process's memory limit when
    /// that is smaller (see <see cref="MaxRetainedBytes"/>).
    /// </summary>
    public long RegionCacheMaxBytes
    {
        get => _regionCacheMaxBytes ?? DefaultRegionCacheMaxBytes;
        set => _regionCacheMaxBytes = value;
    }

    /// <summary>Most huge-tier regions kept for reuse (the floor, with <see cref="AdaptiveCaches"/>); default 16.</summary>
    public int HugeRegionCacheMaxCount { get; set; } = 16;

    /// <summary>
    /// Most bytes of huge-tier regions kept for reuse. Default 256 MB, or a 16th of the process's memory limit when
    /// that is smaller (see <see cref="MaxRetainedBytes"/>).
    /// </summary>
    public long HugeRegionCacheMaxBytes
    {
        get => _hugeRegionCacheMaxBytes ?? DefaultHugeRegionCacheMaxBytes;
        set => _hugeRegionCacheMaxBytes = value;
    }

    /// <summary>
    /// Most buffers of one small or medium size class a thread keeps for itself (within <see cref="ThreadCacheMaxBytes"/>);
    /// 0 turns per-thread caching off. Default 128, as <see cref="TieredArrayPoolOptions.ThreadCacheMaxArrays"/>: a
    /// burst of 100 buffers of 1 or 4 KB then stays in the thread's cache. A thread's stack of a class starts with room
    /// for 128 buffers (8 bytes each) and grows as the thread's rents need more, so a large limit costs a thread only as
    /// its cache fills; buffers returned on a thread that did not rent them go to the shared depot past that room.
    /// </summary>
    public int ThreadCacheMaxBuffers { get; set; } = 128;

    /// <summary>
    /// Most bytes of medium buffers one thread keeps for itself, spread over the size classes; default 2 MB. The small
    /// tier's thread caches keep at most 64 KB or this, whichever is smaller (and at least 8 buffers of a class it
    /// uses, unless this is 0).
    /// </summary>
    public int ThreadCacheMaxBytes { get; set; } = 2 * 1024 * 1024;

    /// <summary>
    /// A global cap on idle memory: at every tick of the idle releaser (a quarter of <see cref="IdleReleaseDelay"/>),
    /// a pool holding more than this, cached and not in use, across all tiers, trims at once without waiting for the
    /// delay. Enforced by the idle releaser, so an infinite <see cref="IdleReleaseDelay"/> turns it off too.
    /// Default 512 MB, or an eighth of the process's memory limit when that is smaller: the limit of the memory cgroup
    /// it runs in (a container's <c>memory.max</c> or <c>memory.limit_in_bytes</c>), else the GC's heap hard limit
    /// when one is set. The region caches' byte caps follow the same rule with a 32nd and a 16th. A value set here
    /// (or bound from configuration) always wins over the derived default.
    /// </summary>
    public long MaxRetainedBytes
    {
        get => _maxRetainedBytes ?? DefaultMaxRetainedBytes;
        set => _maxRetainedBytes = value;
    }

    /// <summary>
    /// A hard cap on the bytes the pool holds from the OS (in use or cached), and so on the bytes in use; 0 for none
    /// (the default). A rent that needs new memory past the cap first makes the pool release its idle memory, then
    /// throws <see cref="InsufficientMemoryException"/> naming this option; the pool stays usable. A release that left
    /// the pool at the cap is not repeated until the pool is rented from or returned to. It counts whole mappings, so in
    /// diagnostic mode the two guard pages around each large and huge buffer count too.
    /// </summary>
    public long MaxBytesInUse { get; set; }

    /// <summary>
    /// How long memory must sit unused before the pool gives it back to the OS in the background: cached regions
    /// returned that long ago are unmapped, and a slab tier that rented nothing for that long drops its free pages.
    /// <see cref="System.Threading.Timeout.InfiniteTimeSpan"/> turns the background release off (<see cref="TieredMemoryPool.Trim"/>
    /// still works). Default 10 seconds. The pool's timer ticks four times per delay, and at most every 10 ms; a tick
    /// of an idle pool costs about half a millisecond of CPU (measured: mostly the timer waking a thread-pool thread),
    /// so the default costs an idle process 0.02% of a core and delays under 40 ms about 5%.
    /// </summary>
    public TimeSpan IdleReleaseDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Drop idle pages with MADV_FREE instead of MADV_DONTNEED: cheaper to reuse, but resident memory only falls when
    /// the system is short of memory, so monitoring sees no drop. Default <see langword="false"/>.
    /// </summary>
    public bool UseLazyFree { get; set; }

    /// <summary>
    /// The clock behind <see cref="IdleReleaseDelay"/>; replace it to test idle release without waiting. Its
    /// <see cref="TimeProvider.TimestampFrequency"/> must be positive. Default <see cref="TimeProvider.System"/>.
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>
    /// Misuse checking (see <see cref="DiagnosticLevel"/>); default <see cref="DiagnosticLevel.Off"/>. The environment
    /// variable <c>ZIPORA_BUFFERS_DIAGNOSTICS</c> (<c>off</c>, <c>sampled</c>, <c>all</c>) wins over this, so a
    /// production process can switch it on without a rebuild.
    /// </summary>
    public DiagnosticLevel Diagnostics { get; set; } = DiagnosticLevel.Off;

    /// <summary>In <see cref="DiagnosticLevel.Sampled"/> mode, the renting stack and the first dispose's stack are captured for one rent in this many (the first, then every this many): 1 captures every rent; default 128.</summary>
    public int DiagnosticSampleRate { get; set; } = 128;

    /// <summary>
    /// Hand out the pooled block's own owner again and again instead of a fresh owner per rent: 0 bytes allocated per
    /// rent, for callers that dispose every owner exactly once (a <c>Pipe</c>, careful code). Not for Kestrel, which
    /// disposes an owner twice when a rent of its is refused: the views <see cref="TieredMemoryPoolFactory"/> hands out
    /// keep an owner per rent in this mode too.
    /// In this mode a second <c>Dispose</c> is ignored only until the block is rented again: a stale dispose after
    /// that returns the new renter's block, two disposes racing may hand the block to two renters, and a
    /// <see cref="Memory{T}"/> kept past <c>Dispose</c> reads and writes the next renter's data once the block is
    /// rented again. Off (the default), every rent gets its own owner and no sequence of calls hands one byte to two
    /// live owners. Default <see langword="false"/>.
    /// </summary>
    public bool ReuseOwners { get; set; }

    /// <summary>Take every page from <see cref="PageAllocator.Portable"/> (aligned heap allocation) instead of the OS's virtual memory calls; default <see langword="false"/>.</summary>
    public bool UsePortableBackend { get; set; }

    /// <summary>
    /// Take every page from byte arrays on the pinned object heap (<see cref="Native.PageAllocator.PinnedArrays"/>),
    /// so every buffer is also an array segment (<c>MemoryMarshal.TryGetArray</c> succeeds). Kestrel's socket transport
    /// needs that: it sends multi-segment responses through <c>SocketAsyncEventArgs.BufferList</c>, which takes only
    /// arrays. Hugepages, page hints and guard pages do not apply. <c>AddTieredMemoryPool()</c> turns this on.
    /// Default <see langword="false"/>.
    /// </summary>
    public bool UsePinnedArrays { get; set; }

    /// <summary>Replaces the OS layer, so tests can inject failures. Wins over <see cref="UsePortableBackend"/>.</summary>
    internal PageAllocator? PageAllocator { get; set; }

    /// <summary>Where base pages come from when the OS layer refuses; the portable allocator unless a test replaces it.</summary>
    internal PageAllocator? FallbackPageAllocator { get; set; } = PortableOnceStaticsAreMade();

    internal PageAllocator ResolvePageAllocator() =>
        PageAllocator ?? (UsePinnedArrays ? Native.PageAllocator.PinnedArrays : UsePortableBackend ? Native.PageAllocator.Portable : Native.PageAllocator.Default);

    /// <summary>
    /// The portable allocator, for the initializer of <see cref="FallbackPageAllocator"/>, which runs before any
    /// constructor's body: options are made before their pool, so reading the allocators' statics here made them before
    /// the pool could (see <see cref="LibraryStatics"/>), and options made at the GC heap limit failed them for good.
    /// </summary>
    private static PageAllocator PortableOnceStaticsAreMade()
    {
        LibraryStatics.EnsureMade();
        return Native.PageAllocator.Portable;
    }

    /// <summary>Where base pages come from when the OS layer refuses: nowhere for pinned arrays, whose buffers must stay arrays.</summary>
    internal PageAllocator? ResolveFallbackPageAllocator() => UsePinnedArrays && PageAllocator is null ? null : FallbackPageAllocator;

    /// <summary>
    /// Sizes the caps nobody set to the process's memory limit: each keeps its standard default or its share of the
    /// limit, whichever is smaller. Called on the pool's own copy.
    /// </summary>
    internal void ApplyMemoryBudget(MemoryBudget budget)
    {
        _maxRetainedBytes ??= budget.CapWithin(DefaultMaxRetainedBytes, 1.0 / 8);
        _regionCacheMaxBytes ??= budget.CapWithin(DefaultRegionCacheMaxBytes, 1.0 / 32);
        _hugeRegionCacheMaxBytes ??= budget.CapWithin(DefaultHugeRegionCacheMaxBytes, 1.0 / 16);
    }

    /// <summary>Copies the settings, so a pool is not changed by later edits of the options object.</summary>
    internal TieredMemoryPoolOptions Clone() => (TieredMemoryPoolOptions)MemberwiseClone();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    internal void Validate()
    {
        if (!BitOperations.IsPow2(MmapThreshold) || MmapThreshold < 4096 || MmapThreshold > 1024 * 1024)
        {
            throw Invalid(nameof(MmapThreshold), $"must be a power of two from 4096 to 1048576 bytes, but is {MmapThreshold}.");
        }

        if (!BitOperations.IsPow2(HugepageThreshold) || HugepageThreshold <= MmapThreshold || HugepageThreshold > 1024 * 1024 * 1024)
        {
            throw Invalid(nameof(HugepageThreshold), $"must be a power of two above MmapThreshold ({MmapThreshold}) and at most 1 GiB, but is {HugepageThreshold}.");
        }

        if (MaxBufferSize < MinimumMaxBufferSize)
        {
            throw Invalid(nameof(MaxBufferSize), $"must be at least {MinimumMaxBufferSize} bytes (the default buffer size), but is {MaxBufferSize}.");
        }

        if (UsePinnedArrays && MaxBufferSize > MaxPinnedArrayBufferSize)
        {
            throw Invalid(nameof(MaxBufferSize), $"must be at most {MaxPinnedArrayBufferSize} bytes (1.75 GiB) with UsePinnedArrays (which AddTieredMemoryPool turns on), whose larger buffers would need an array longer than Array.MaxLength, but is {MaxBufferSize}.");
        }

        if (IdleReleaseDelay <= TimeSpan.Zero && IdleReleaseDelay != System.Threading.Timeout.InfiniteTimeSpan)
        {
            throw Invalid(nameof(IdleReleaseDelay), $"must be positive or Timeout.InfiniteTimeSpan, but is {IdleReleaseDelay}.");
        }

        if (string.IsNullOrWhiteSpace(Name))
        {
            throw Invalid(nameof(Name), "must not be empty.");
        }

        OptionChecks.RequireClock(TimeProvider, nameof(TieredMemoryPoolOptions), nameof(TimeProvider));

        if (!Enum.IsDefined(Diagnostics))
        {
            throw Invalid(nameof(Diagnostics), $"must be Off, Sampled or All, but is {Diagnostics}.");
        }

        if (DiagnosticSampleRate < 1)
        {
            throw Invalid(nameof(DiagnosticSampleRate), $"must be at least 1, but is {DiagnosticSampleRate}.");
        }

        RequireNotNegative(MaxBytesInUse, nameof(MaxBytesInUse));
        RequireNotNegative(MaxRetainedBytes, nameof(MaxRetainedBytes));
        RequireNotNegative(RegionCacheMaxCount, nameof(RegionCacheMaxCount));
        RequireNotNegative(RegionCacheMaxBytes, nameof(RegionCacheMaxBytes));
        RequireNotNegative(HugeRegionCacheMaxCount, nameof(HugeRegionCacheMaxCount));
        RequireNotNegative(HugeRegionCacheMaxBytes, nameof(HugeRegionCacheMaxBytes));
        RequireNotNegative(ThreadCacheMaxBuffers, nameof(ThreadCacheMaxBuffers));
        RequireNotNegative(ThreadCacheMaxBytes, nameof(ThreadCacheMaxBytes));
    }

    private static void RequireNotNegative(long value, string name) => OptionChecks.RequireNotNegative(value, nameof(TieredMemoryPoolOptions), name);

    private static ArgumentException Invalid(string name, string problem) => OptionChecks.Invalid(nameof(TieredMemoryPoolOptions), name, problem);
}
