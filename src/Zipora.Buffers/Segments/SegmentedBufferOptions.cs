using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// How a <see cref="SegmentedBufferWriter"/> or <see cref="SegmentedMemoryStream"/> rents its segments: from which pool,
/// how large, and how much it may hold. Read when the writer or stream is created; later changes do not affect it.
/// </summary>
public sealed class SegmentedBufferOptions
{
    /// <summary>The default <see cref="InitialSegmentSize"/>: 4 KB, a medium-tier class served from the thread's cache.</summary>
    public const int DefaultInitialSegmentSize = 4096;

    /// <summary>The default <see cref="MaxSegmentSize"/>: 128 KB, large enough that a 64 MB message takes 512 segments.</summary>
    public const int DefaultMaxSegmentSize = 128 * 1024;

    internal static readonly SegmentedBufferOptions Default = new();

    private MemoryPool<byte>? _pool;
    // Null until set: a default gives way to a pool whose MaxBufferSize is smaller, a value set is validated against it.
    private int? _initialSegmentSize;
    private int? _maxSegmentSize;
    private long _maxLength = DefaultMaxLength;

    // Counts the changes, so a settings copy made before one is made again (see Settings).
    private int _version;
    private SegmentedBufferSettings? _settings;

    /// <summary>The pool segments are rented from; <see langword="null"/> (the default) for <see cref="TieredMemoryPool.Shared"/>.</summary>
    /// <remarks>
    /// With a <see cref="TieredMemoryPool"/> a segment allocates nothing and the pool's statistics and meter report the
    /// writers and streams (<see cref="TieredMemoryPoolStatistics.Segmented"/>); one already disposed is refused with
    /// <see cref="ObjectDisposedException"/> when a writer or stream is made, one disposed later at the next rent. Any
    /// other pool works too (and is used as it is, disposed or not): each segment
    /// is then one of its rents, and its owner is disposed when the segment is let go of. Its owner's
    /// <see cref="IMemoryOwner{T}.Memory"/> is read once, at the rent: shorter than asked, the rent fails with
    /// <see cref="InvalidOperationException"/>; throwing, the owner is disposed and its exception passed on. The
    /// segment writes that memory until it disposes the owner, so the pool must not hand it to anyone else meanwhile
    /// (which the buffers cannot check).
    /// </remarks>
    public MemoryPool<byte>? Pool
    {
        get => _pool;
        set => Changed(ref _pool, value);
    }

    /// <summary>
    /// The first segment's size when the first request asks for less (default 4 KB, or the largest segment when that is
    /// smaller); from 1 to <see cref="MaxSegmentSize"/>.
    /// </summary>
    public int InitialSegmentSize
    {
        get => _initialSegmentSize ?? DefaultInitialSegmentSize;
        set => Changed(ref _initialSegmentSize, value);
    }

    /// <summary>
    /// The largest segment the growth reaches (default 128 KB): each segment asks for twice the last one's size, up to
    /// this. A request for a larger buffer (<see cref="SegmentedBufferWriter.GetMemory"/> with a larger hint) still gets
    /// one segment at least that large, up to the pool's <see cref="MemoryPool{T}.MaxBufferSize"/>. Left unset, it is
    /// capped at that <see cref="MemoryPool{T}.MaxBufferSize"/> (a pool of 4 KB blocks, such as Kestrel's, gets 4 KB
    /// segments); a value set above it is refused when a writer or stream is made.
    /// </summary>
    public int MaxSegmentSize
    {
        get => _maxSegmentSize ?? DefaultMaxSegmentSize;
        set => Changed(ref _maxSegmentSize, value);
    }

    /// <summary>
    /// The default <see cref="MaxLength"/>: <see cref="int.MaxValue"/> bytes, as a <see cref="System.IO.MemoryStream"/>
    /// holds at most. Without a limit, one write far past a stream's end, or one <c>SetLength</c>, would zero-fill
    /// memory until the process ran out of it.
    /// </summary>
    public const long DefaultMaxLength = int.MaxValue;

    /// <summary>The most bytes the writer or stream may hold at once (default <see cref="DefaultMaxLength"/>, 2 GB); raise it for larger messages.</summary>
    public long MaxLength
    {
        get => _maxLength;
        set => Changed(ref _maxLength, value);
    }

    /// <summary>
    /// The options as they are now, validated: the same copy for every buffer until an option changes, so creating a
    /// buffer validates nothing again. A change made while another thread reads is seen by the next buffer at the
    /// latest: the copy carries the change count it was made at, read before the options.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the exception names it.</exception>
    internal SegmentedBufferSettings Settings
    {
        get
        {
            SegmentedBufferSettings? settings = _settings;
            int version = Volatile.Read(ref _version);
            return settings is not null && settings.Version == version ? settings : MakeSettings(version);
        }
    }

    private SegmentedBufferSettings MakeSettings(int version)
    {
        // Each option read once: what is validated is what the buffer gets, even while another thread changes them.
        var settings = new SegmentedBufferSettings(_pool ?? TieredMemoryPool.Shared, _initialSegmentSize, _maxSegmentSize, _maxLength, version);
        _settings = settings;
        return settings;
    }

    private void Changed<T>(ref T field, T value)
    {
        field = value;

        // After the value: a copy made at the new count was made from the new value.
        Interlocked.Increment(ref _version);
    }
}
