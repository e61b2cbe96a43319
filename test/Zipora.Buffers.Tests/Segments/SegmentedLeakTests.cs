using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Writers and streams dropped without dispose: their blocks go back through the pool's leak reclaim (quarantined for
/// the idle delay, then reused), and their finalizers correct the counts without touching memory. Forces full
/// collections, so it runs alone.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SegmentedLeakTests
{
    // 4, 8, 16, 32 and 64 KB segments: medium and large tiers.
    private const int MessageSize = 100_000;
    private const int Segments = 5;

    [Fact]
    public void AWriterDroppedWithoutDisposeHasItsSegmentsReclaimedByThePool()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromSeconds(10) });
        LeakWriter(pool);
        AssertReclaimed(pool, time);
    }

    [Fact]
    public void AStreamDroppedWithoutDisposeHasItsSegmentsReclaimedByThePool()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromSeconds(10) });
        LeakStream(pool);
        AssertReclaimed(pool, time);
    }

    [Fact]
    public void ASequenceStillHeldKeepsALeakedStreamsMemoryIntact()
    {
        using var pool = new TieredMemoryPool();
        ReadOnlySequence<byte> sequence = LeakStreamKeepingItsSequence(pool);
        CollectUntil(() => pool.GetStatistics().Segmented.Leaked == 1);

        // The stream's finalizer ran, and returned nothing: the blocks are still reachable through the sequence.
        CollectUntil(static () => false);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.LeaksReclaimed);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(MessageSize, sequence.Length);
        Assert.Equal(-1, sequence.PositionOf((byte)0)?.GetInteger() ?? -1);
        GC.KeepAlive(sequence);
    }

    [Fact]
    public void ADisposedWriterThatIsCollectedCountsNoLeakAndReturnsNothingTwice()
    {
        using var pool = new TieredMemoryPool();
        DisposeAndDrop(pool);
        CollectUntil(static () => false);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.LeaksReclaimed);
        Assert.Equal(0, statistics.Segmented.Leaked);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);
        Assert.Equal(statistics.Large.Rents, statistics.Large.Returns);
    }

    [Fact]
    public void TheMessagesALeakedWriterEndedStayInTheStatisticsAfterItIsCountedAsLeaked()
    {
        using var pool = new TieredMemoryPool();
        EndAMessageAndLeak(pool);
        SegmentedBufferStatistics before = pool.GetStatistics().Segmented;
        Assert.Equal(MessageSize, before.LargestMessage);
        Assert.Equal(1, before.Messages);
        Assert.Equal(Segments, before.MessageSegments);

        CollectUntil(() => pool.GetStatistics().Segmented.Leaked == 1);

        // "Messages, segments per message, the largest message and leaks": retiring the tracker forgets none of them.
        SegmentedBufferStatistics after = pool.GetStatistics().Segmented;
        Assert.Equal(1, after.Leaked);
        Assert.Equal(0, after.LiveBuffers);
        Assert.Equal(MessageSize, after.LargestMessage);
        Assert.Equal(1, after.Messages);
        Assert.Equal(Segments, after.MessageSegments);
    }

    private static void AssertReclaimed(TieredMemoryPool pool, FakeTimeProvider time)
    {
        Assert.Equal(1, pool.GetStatistics().Segmented.LiveBuffers);
        CollectUntil(() => pool.GetStatistics().LeaksReclaimed >= Segments);

        TieredMemoryPoolStatistics leaked = pool.GetStatistics();
        Assert.Equal(Segments, leaked.LeaksReclaimed);
        Assert.Equal(1, leaked.Segmented.Leaked);
        Assert.Equal(0, leaked.Segmented.LiveBuffers);
        Assert.Equal(0, leaked.Segmented.BytesHeld);

        // Quarantined for the idle delay (a Span may still run), then back in the pool.
        for (int tick = 0; tick < 5; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakWriter(TieredMemoryPool pool)
    {
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = 64 * 1024 });
        writer.Write(new byte[MessageSize]);
        Assert.Equal(Segments, CountSegments(writer.GetReadOnlySequence()));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakStream(TieredMemoryPool pool)
    {
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = 64 * 1024 });
        for (int written = 0; written < MessageSize; written += 4000)
        {
            stream.Write(new byte[4000]);
        }

        Assert.Equal(Segments, CountSegments(stream.GetReadOnlySequence()));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void EndAMessageAndLeak(TieredMemoryPool pool)
    {
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = 64 * 1024 });
        writer.Write(new byte[MessageSize]);
        writer.Reset();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ReadOnlySequence<byte> LeakStreamKeepingItsSequence(TieredMemoryPool pool)
    {
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool });
        byte[] ones = new byte[MessageSize];
        ones.AsSpan().Fill(1);
        stream.Write(ones);
        return stream.GetReadOnlySequence();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DisposeAndDrop(TieredMemoryPool pool)
    {
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[MessageSize]);
        writer.Dispose();
    }

    private static int CountSegments(ReadOnlySequence<byte> sequence)
    {
        int count = 0;
        foreach (ReadOnlyMemory<byte> _ in sequence)
        {
            count++;
        }

        return count;
    }

    private static void CollectUntil(Func<bool> done)
    {
        for (int i = 0; i < 8 && !done(); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }
}
