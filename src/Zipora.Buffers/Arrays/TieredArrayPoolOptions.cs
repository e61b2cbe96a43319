using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>Settings of a <see cref="TieredArrayPool"/>: which lengths are pooled, how many arrays each cache keeps, and when idle arrays are dropped.</summary>
/// <remarks>Values are checked when the pool is built; an invalid one throws <see cref="ArgumentException"/> naming the option.</remarks>
public sealed class TieredArrayPoolOptions
{
    /// <summary>
    /// The owner tag (<c>zipora.buffers.owner</c>) of this pool's metrics; default <c>arrays</c>
    /// (<see cref="TieredArrayPool.Shared"/> is <c>shared</c>). A pool made while another live array pool reports under
    /// its name reports as <c>name#2</c> (the lowest number free), so each series is one pool's.
    /// </summary>
    public string Name { get; set; } = "arrays";

    /// <summary>
    /// The longest pooled array, from 16 bytes to 1 GiB; default 1 GiB. It is rounded up to its size class. Longer
    /// requests get an array of exactly the asked length, which <see cref="TieredArrayPool.Return"/> drops.
    /// </summary>
    public int MaxArrayLength { get; set; } = ArraySizeClasses.MaxLength;

    /// <summary>
    /// Most arrays of one size class a thread keeps for itself, from 0 (per-thread caching off) to 65,536; default 128.
    /// A thread's stack of a class gets its slots whole on the class's first use (8 bytes per array it may hold), so a
    /// count meant as "no limit" would cost every thread up to a gigabyte per class before it cached anything.
    /// </summary>
    public int ThreadCacheMaxArrays { get; set; } = 128;

    /// <summary>The largest <see cref="ThreadCacheMaxArrays"/>: 512 KB of slots per class a thread uses, at most.</summary>
    internal const int MaxThreadCacheArrays = 1 << 16;

    /// <summary>
    /// Most bytes of one size class a thread keeps for itself; a class longer than this keeps one array per thread (as
    /// <see cref="System.Buffers.ArrayPool{T}.Shared"/> does), and 0 turns per-thread caching off. Default 4 MB.
    /// </summary>
    public int ThreadCacheMaxBytesPerClass { get; set; } = 4 * 1024 * 1024;

    /// <summary>Most bytes kept in the shared depots behind the thread caches, over all classes; arrays past it are dropped. Default 1 GiB.</summary>
    public long SharedCacheMaxBytes { get; set; } = 1024L * 1024 * 1024;

    /// <summary>
    /// Arrays of at least this length are allocated on the pinned object heap, so socket I/O can pin them for free
    /// and they never fragment the compacting heap; 0 pins every array, <see cref="int.MaxValue"/> none. Default 16 KB.
    /// </summary>
    public int PinnedThreshold { get; set; } = 16 * 1024;

    /// <summary>
    /// How long a size class must go without a rent or return before the pool drops its cached arrays, from every
    /// thread's cache and the depots; <see cref="Timeout.InfiniteTimeSpan"/> turns it off (<see cref="TieredArrayPool.Trim"/>
    /// still works). Default 10 seconds. The timer ticks four times per delay, and at most every 10 ms (see
    /// <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/> for what a tick costs).
    /// </summary>
    public TimeSpan IdleReleaseDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The clock behind <see cref="IdleReleaseDelay"/>; replace it to test idle release without waiting. Its
    /// <see cref="TimeProvider.TimestampFrequency"/> must be positive. Default <see cref="TimeProvider.System"/>.
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Copies the settings, so a pool is not changed by later edits of the options object.</summary>
    internal TieredArrayPoolOptions Clone() => (TieredArrayPoolOptions)MemberwiseClone();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    internal void Validate()
    {
        if (MaxArrayLength < ArraySizeClasses.MinLength || MaxArrayLength > ArraySizeClasses.MaxLength)
        {
            throw Invalid(nameof(MaxArrayLength), $"must be from {ArraySizeClasses.MinLength} to {ArraySizeClasses.MaxLength} (1 GiB), but is {MaxArrayLength}.");
        }

        if (IdleReleaseDelay <= TimeSpan.Zero && IdleReleaseDelay != Timeout.InfiniteTimeSpan)
        {
            throw Invalid(nameof(IdleReleaseDelay), $"must be positive or Timeout.InfiniteTimeSpan, but is {IdleReleaseDelay}.");
        }

        if (string.IsNullOrWhiteSpace(Name))
        {
            throw Invalid(nameof(Name), "must not be empty.");
        }

        OptionChecks.RequireClock(TimeProvider, nameof(TieredArrayPoolOptions), nameof(TimeProvider));

        if (ThreadCacheMaxArrays is < 0 or > MaxThreadCacheArrays)
        {
            throw Invalid(nameof(ThreadCacheMaxArrays), $"must be from 0 to {MaxThreadCacheArrays}, but is {ThreadCacheMaxArrays}.");
        }

        RequireNotNegative(ThreadCacheMaxBytesPerClass, nameof(ThreadCacheMaxBytesPerClass));
        RequireNotNegative(SharedCacheMaxBytes, nameof(SharedCacheMaxBytes));
        RequireNotNegative(PinnedThreshold, nameof(PinnedThreshold));
    }

    private static void RequireNotNegative(long value, string name) => OptionChecks.RequireNotNegative(value, nameof(TieredArrayPoolOptions), name);

    private static ArgumentException Invalid(string name, string problem) => OptionChecks.Invalid(nameof(TieredArrayPoolOptions), name, problem);
}
