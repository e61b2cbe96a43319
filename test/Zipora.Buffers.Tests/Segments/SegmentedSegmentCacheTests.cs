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

    private static List<BufferSegment> RentMany(int count) => [.. Enumerable.Range(0, count).Select(static _ => BufferSegmentCache.Rent())];
}
