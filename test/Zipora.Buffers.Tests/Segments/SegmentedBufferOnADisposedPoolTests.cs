using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A writer or stream whose <see cref="SegmentedBufferOptions.Pool"/> is a disposed <see cref="TieredMemoryPool"/> is
/// refused when it is made, with an <see cref="ObjectDisposedException"/> that names the option and the pool, and takes
/// nothing from the pool; it was accepted, counted live in the disposed pool's statistics, and failed at its first write
/// (a stream only read from never failed at all). The block the thread kept from its last message on that pool went
/// back with the pool and is never handed out again.
/// </summary>
public sealed class SegmentedBufferOnADisposedPoolTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ABufferOnADisposedPoolIsRefusedWhenMadeAndTakesNothing(bool stream)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "disposed-under-options", TimeProvider = new FakeTimeProvider() });
        var options = new SegmentedBufferOptions { Pool = pool };

        // A message written and let go of first: its block is kept for the thread's next message on this pool.
        using (var before = new SegmentedBufferWriter(options))
        {
            before.Write(new byte[1000]);
        }

        pool.Dispose();
        long liveBefore = pool.GetStatistics().Segmented.LiveBuffers;

        ObjectDisposedException refused = Assert.Throws<ObjectDisposedException>(() =>
        {
            using IDisposable made = stream ? new SegmentedMemoryStream(options) : new SegmentedBufferWriter(options);
        });

        Assert.Contains("SegmentedBufferOptions.Pool", refused.Message, StringComparison.Ordinal);
        Assert.Contains("disposed-under-options", refused.Message, StringComparison.Ordinal);
        Assert.Contains(stream ? nameof(SegmentedMemoryStream) : nameof(SegmentedBufferWriter), refused.Message, StringComparison.Ordinal);
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Equal(liveBefore, after.Segmented.LiveBuffers);
        Assert.Equal(0, after.BytesInUse);
        Assert.Equal(0, after.Segmented.BytesHeld);
    }

    [Fact]
    public void ABufferMadeBeforeItsPoolWasDisposedFailsItsNextRentAndStillDisposes()
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider() });
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        pool.Dispose();

        // The segment it holds stays valid until the writer lets it go; a new one cannot be rented.
        Assert.Equal(100, writer.ToArray().Length);
        Assert.Throws<ObjectDisposedException>(() => writer.GetSpan(1 << 20));
        writer.Dispose();
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }
}
