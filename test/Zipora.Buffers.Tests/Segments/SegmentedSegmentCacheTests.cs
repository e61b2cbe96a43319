using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The cache of segment objects: a segment handed out twice at once would put two buffers' data in one object, so
/// every rent must give a segment no one else holds, across the per-thread and shared stacks and across threads.
/// </summary>
public sealed class SegmentedSegmentCacheTests
{
    [Fact]
    public void SegmentsReturnedBeyondTheThreadsStackAreReusedAndNeverHandedOutTwice()
    {
        List<BufferSegment> first = RentMany(500);
        Assert.Equal(500, first.Distinct().Count());
        first.ForEach(BufferSegmentCache.Return);

        List<BufferSegment> second = RentMany(500);
        Assert.Equal(500, second.Distinct().Count());

        // Other tests' threads share the shared stack, so not all 500 need come back here; most do.
        Assert.True(second.Intersect(first).Count() >= 64);
        second.ForEach(BufferSegmentCache.Return);
    }

    [Fact]
    public void SegmentsReturnedOnAnotherThreadReachThisOneThroughTheSharedStack()
    {
        List<BufferSegment> rented = RentMany(300);
        var consumer = new Thread(() => rented.ForEach(BufferSegmentCache.Return));
        consumer.Start();
        consumer.Join();

        // This thread's stack is empty of them; its rents refill from the shared stack in batches.
        List<BufferSegment> again = RentMany(300);
        Assert.Equal(300, again.Distinct().Count());
        Assert.NotEmpty(again.Intersect(rented));
        again.ForEach(BufferSegmentCache.Return);
    }

    [Fact]
    public void SegmentsKeptWithATrackerForTheNextBufferNeverCarryOneBuffersDataIntoAnothers()
    {
        // A released segment object waits with its buffer's tracker for the next first segment, of that buffer or of
        // the next one to take the tracker, here or on another thread. Were it ever handed to two buffers, one's bytes
        // would show in the other's: every live writer holds only its own id, checked after every step.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 256 };
        var random = new Random(7);
        var handedOver = new System.Collections.Concurrent.BlockingCollection<(SegmentedBufferWriter Writer, byte Id)>();
        Thread consumer = SegmentedBuffers.Started(() =>
        {
            // Writers finished on another thread: their trackers and segments are parked on this one.
            foreach ((SegmentedBufferWriter writer, byte id) in handedOver.GetConsumingEnumerable())
            {
                AssertHoldsOnly(writer, id);
                writer.Dispose();
            }
        });

        var live = new List<(SegmentedBufferWriter Writer, byte Id)>();
        for (int step = 0; step < 20_000; step++)
        {
            if (live.Count < 8)
            {
                live.Add((new SegmentedBufferWriter(options), (byte)(1 + (step % 250))));
            }

            int pick = random.Next(live.Count);
            (SegmentedBufferWriter writer, byte id) = live[pick];
            switch (random.Next(6))
            {
                case 0:
                    live.RemoveAt(pick);
                    writer.Dispose();
                    break;
                case 1:
                    live.RemoveAt(pick);
                    handedOver.Add((writer, id));
                    break;
                default:
                    SegmentedBuffers.ConsumeResetOrWrite(writer, id, random, maxWrite: 300);
                    break;
            }

            live.ForEach(static entry => AssertHoldsOnly(entry.Writer, entry.Id));
        }

        handedOver.CompleteAdding();
        consumer.Join();
        live.ForEach(static entry => entry.Writer.Dispose());
        SegmentedBuffers.AssertBalanced(pool);
    }

    private static void AssertHoldsOnly(SegmentedBufferWriter writer, byte id)
    {
        foreach (ReadOnlyMemory<byte> segment in writer.GetReadOnlySequence())
        {
            int other = segment.Span.IndexOfAnyExcept(id);
            Assert.True(other < 0, $"writer {id} holds a byte {(other < 0 ? 0 : segment.Span[other])} of another writer");
        }
    }

    private static List<BufferSegment> RentMany(int count) => [.. Enumerable.Range(0, count).Select(static _ => BufferSegmentCache.Rent())];
}
