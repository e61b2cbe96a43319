using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The trackers that count the segmented buffers in place of a finalizer per buffer: reused from buffer to buffer
/// without cross-talk, exact across threads that exit, and retired for good when their buffer is collected (even if
/// another object's finalizer brings it back). Forces full collections, so it runs alone.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SegmentedTrackerTests
{
    private const int SegmentSize = 4096;

    [Theory]
    [InlineData(typeof(SegmentedBufferWriter))]
    [InlineData(typeof(SegmentedMemoryStream))]
    public void TheBuffersHaveNoFinalizer(Type type) =>
        Assert.Null(type.GetMethod("Finalize", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.DeclaredOnly));

    [Fact]
    public void ADisposedWritersTrackerServesTheNextWriterWithoutCrossTalk()
    {
        using var pool = new TieredMemoryPool();
        var first = new SegmentedBufferWriter(Options(pool));
        first.Write(new byte[100]);
        first.Dispose();

        // Same thread: the second writer takes the tracker the first gave back.
        using var second = new SegmentedBufferWriter(Options(pool));
        second.Write(new byte[200]);
        Assert.Throws<ObjectDisposedException>(() => first.GetMemory());
        first.Dispose();

        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        AssertOneLiveBufferHoldingOneSegment(statistics);
        Assert.Equal(1, statistics.Messages);
        Assert.Equal(200, second.Length);
    }

    [Fact]
    public void AWriterBroughtBackAfterItWasCountedLeakedNeverChangesTheCountsOfTheWriterAfterIt()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        SegmentedBufferWriter zombie = SegmentedBuffers.CollectARevivedWriter(Options(pool));
        Assert.Equal(1, pool.GetStatistics().Segmented.Leaked);

        using var next = new SegmentedBufferWriter(Options(pool));
        next.Write(new byte[300]);
        UseAndDispose(zombie);

        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        TestContext.Current.TestOutputHelper?.WriteLine(statistics.ToString());
        AssertOneLiveBufferHoldingOneSegment(statistics);
        Assert.Equal(1, statistics.Leaked);
        Assert.Equal(300, next.Length);
        next.Dispose();
        Assert.Equal(0, pool.GetStatistics().Segmented.LiveBuffers);
        Assert.Equal(0, pool.GetStatistics().Segmented.BytesHeld);
    }

    [Fact]
    public void ADisposedWriterKeptAliveDoesNotHideTheLeakOfTheWriterThatReusedItsTracker()
    {
        using var pool = new TieredMemoryPool();
        var disposed = new SegmentedBufferWriter(Options(pool));
        disposed.Write(new byte[100]);
        disposed.Dispose();
        SegmentedBuffers.DropAWriter(Options(pool));
        GC.Collect();
        GC.WaitForPendingFinalizers();

        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        Assert.Equal(1, statistics.Leaked);
        Assert.Equal(0, statistics.LiveBuffers);
        Assert.Equal(0, statistics.BytesHeld);
        GC.KeepAlive(disposed);
    }

    [Fact]
    public void AWriterBroughtBackAndDisposedBeforeAnySweepLeavesItsTrackerFitForTheNextWriter()
    {
        // No statistics read and no tick between the collection and the dispose: the revived writer gives its tracker
        // back itself, with a token whose weak reference the collection cleared.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        SegmentedBuffers.CollectARevivedWriter(Options(pool)).Dispose();

        using var next = new SegmentedBufferWriter(Options(pool));
        next.Write(new byte[10]);
        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        Assert.Equal(0, statistics.Leaked);
        AssertOneLiveBufferHoldingOneSegment(statistics);
    }

    [Fact]
    public void LeakedWritersAndStreamsAreCountedOnceAndTheirTrackersAreNotReused()
    {
        using var pool = new TieredMemoryPool();
        LeakBuffers(pool, 100);
        GC.Collect();
        GC.WaitForPendingFinalizers();

        SegmentedBufferStatistics leaked = pool.GetStatistics().Segmented;
        Assert.Equal(200, leaked.Leaked);
        Assert.Equal(0, leaked.LiveBuffers);
        Assert.Equal(0, leaked.BytesHeld);

        // Read again: nothing counted twice; new buffers are counted as usual.
        using var writer = new SegmentedBufferWriter(Options(pool));
        writer.Write(new byte[10]);
        SegmentedBufferStatistics after = pool.GetStatistics().Segmented;
        Assert.Equal(200, after.Leaked);
        AssertOneLiveBufferHoldingOneSegment(after);
    }

    [Fact]
    public void TheCountsStayExactAcrossThreadsThatExit()
    {
        const int Threads = 16;
        using var pool = new TieredMemoryPool();
        var kept = new SegmentedBufferWriter[Threads];
        var threads = new List<Thread>();
        for (int i = 0; i < Threads; i++)
        {
            int index = i;
            var thread = new Thread(() =>
            {
                // One writer disposed here (its tracker stays as the thread's spare), one handed to the test thread.
                using (var done = new SegmentedBufferWriter(Options(pool)))
                {
                    done.Write(new byte[1000]);
                }

                kept[index] = new SegmentedBufferWriter(Options(pool));
                kept[index].Write(new byte[1000]);
            });
            thread.Start();
            threads.Add(thread);
        }

        threads.ForEach(static thread => thread.Join());
        SegmentedBufferStatistics running = pool.GetStatistics().Segmented;
        Assert.Equal(Threads, running.LiveBuffers);
        Assert.Equal(Threads * SegmentSize, running.BytesHeld);
        Assert.Equal(Threads, running.Messages);

        // Disposed on another thread than the one that created them; then many more on this thread, which take the
        // exited threads' spares back through the shared trackers.
        Array.ForEach(kept, static writer => writer.Dispose());
        for (int i = 0; i < 4 * Threads; i++)
        {
            using var writer = new SegmentedBufferWriter(Options(pool));
            writer.Write(new byte[1]);
        }

        SegmentedBufferStatistics done = pool.GetStatistics().Segmented;
        Assert.Equal(0, done.LiveBuffers);
        Assert.Equal(0, done.BytesHeld);
        Assert.Equal(6 * Threads, done.Messages);
        Assert.Equal(0, done.Leaked);
    }

    [Fact]
    public void AWriterHoldingATrackerTakenFromAThreadThatExitedKeepsItWhenTheSweepTakesBackDeadThreadsSpares()
    {
        using var pool = new TieredMemoryPool();
        SegmentedBufferWriter? held = null;
        var thread = new Thread(() =>
        {
            // The first writer's dispose parks its tracker on this thread; the second takes it from there.
            using (var first = new SegmentedBufferWriter(Options(pool)))
            {
                first.Write(new byte[10]);
            }

            held = new SegmentedBufferWriter(Options(pool));
            held.Write(new byte[] { 1, 2, 3 });
        });
        thread.Start();
        thread.Join();

        // The sweep runs when statistics are read: the thread is gone, and its slot is empty.
        Assert.Equal(1, pool.GetStatistics().Segmented.LiveBuffers);
        for (int i = 0; i < 10; i++)
        {
            using var other = new SegmentedBufferWriter(Options(pool));
            other.Write(new byte[] { 9 });
            Assert.Equal(2, pool.GetStatistics().Segmented.LiveBuffers);
        }

        SegmentedBufferWriter writer = held!;
        writer.Write(new byte[] { 4 });
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, writer.ToArray());
        writer.Dispose();
        SegmentedBufferStatistics done = pool.GetStatistics().Segmented;
        Assert.Equal(0, done.LiveBuffers);
        Assert.Equal(12, done.Messages);
        Assert.Equal(0, done.Leaked);
    }

    [Fact]
    public void ADisposeLandingWhileReadsAndWritesRunOnAnotherThreadAlwaysReleasesTheStream()
    {
        // The guard is given back without a fence; a dispose that finds it taken pays for one, so no release is lost.
        using var pool = new TieredMemoryPool();
        byte[] chunk = new byte[700];
        byte[] into = new byte[1000];
        for (int round = 0; round < 300; round++)
        {
            var stream = new SegmentedMemoryStream(Options(pool));
            using var start = new Barrier(2);
            var user = new Thread(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 100; i++)
                    {
                        stream.Write(chunk);
                        stream.Position = i * 300;
                        _ = stream.Read(into);
                        stream.Position = stream.Length;
                    }
                }
                catch (ObjectDisposedException)
                {
                    // The documented outcome of a stream another thread disposes.
                }
            });
            user.Start();
            start.SignalAndWait();
            Thread.SpinWait(round * 40);
            stream.Dispose();
            user.Join();
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
        Assert.Equal(0, statistics.BytesInUse);
    }

    private static void AssertOneLiveBufferHoldingOneSegment(SegmentedBufferStatistics statistics)
    {
        Assert.Equal(1, statistics.LiveBuffers);
        Assert.Equal(SegmentSize, statistics.BytesHeld);
    }

    private static SegmentedBufferOptions Options(TieredMemoryPool pool) =>
        new() { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize };

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakBuffers(TieredMemoryPool pool, int count)
    {
        for (int i = 0; i < count; i++)
        {
            new SegmentedBufferWriter(Options(pool)).Write(new byte[100]);
            new SegmentedMemoryStream(Options(pool)).Write(new byte[100]);
        }
    }

    /// <summary>A revived writer may work or refuse (its blocks may be reclaimed); either way it must not reach the others' counts.</summary>
    private static void UseAndDispose(SegmentedBufferWriter zombie)
    {
        try
        {
            zombie.Write(new byte[5000]);
            zombie.Reset();
            zombie.Write(new byte[100]);
        }
        catch (ObjectDisposedException)
        {
            // Retired: its blocks went back through the pool's leak reclaim.
        }

        zombie.Dispose();
    }
}
