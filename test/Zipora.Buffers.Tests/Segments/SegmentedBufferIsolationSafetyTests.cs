using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

#pragma warning disable CA2000, CA1849, xUnit1031

namespace Zipora.Buffers.Tests;

/// <summary>
/// Each segmented buffer holds only its own segments and blocks: the segment object kept with the buffer's tracker
/// (and the tracker moving between threads, thread slots, pools and the sweep), and the stream's spans built from the
/// block's address. Every live buffer is checked to hold only its own bytes in segment objects and blocks no other
/// holds.
/// </summary>
public sealed partial class SegmentedBufferIsolationSafetyTests
{
    // Segment objects and blocks held by live writers right now, with the id of the writer holding each.
    private readonly ConcurrentDictionary<BufferSegment, byte> _segments = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<nint, byte> _blocks = new();

    [Fact]
    public void WritersFinishedOnOtherThreadsNeverShareASegmentObjectOrABlockWithALiveWriter()
    {
        // Four producers fill writers (1 to 3 segments, a consume in between puts a segment with the tracker) and hand
        // them to a consumer that disposes them: trackers and their spare segments land in the consumer's slot, then
        // in the pool's shared stack, and come back to the producers. A segment or block held twice is caught by the
        // registry (and by the bytes, which are each writer's id).
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 128 };
        using var handedOver = new BlockingCollection<(SegmentedBufferWriter Writer, byte Id)>(boundedCapacity: 16);
        Exception? failure = null;
        Thread consumer = SegmentedBuffers.Started(() =>
        {
            foreach ((SegmentedBufferWriter writer, byte id) in handedOver.GetConsumingEnumerable())
            {
                try
                {
                    AssertHoldsOnly(writer, id);
                    Unregister(writer, id);
                }
                catch (Exception exception)
                {
                    failure ??= exception;
                }

                writer.Dispose();
            }
        });
        Thread[] producers = [.. Enumerable.Range(0, 4).Select(p => SegmentedBuffers.Started(() =>
        {
            try
            {
                for (int i = 0; i < 1500; i++)
                {
                    byte id = (byte)(1 + (p * 60) + (i % 60));
                    var writer = new SegmentedBufferWriter(options);
                    writer.Write(Filled(id, 1 + (i * 53 % 300)));
                    writer.Consume(writer.Length / 2);
                    writer.Write(Filled(id, i % 90));
                    Register(writer, id);
                    AssertHoldsOnly(writer, id);
                    handedOver.Add((writer, id));
                }
            }
            catch (Exception exception)
            {
                failure ??= exception;
            }
        }))];
        Array.ForEach(producers, static thread => thread.Join());
        handedOver.CompleteAdding();
        consumer.Join();
        Assert.Null(failure);
        Assert.Empty(_segments);
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void TrackersParkedWithASpareSegmentOnThreadsThatExitedServeConcurrentWritersOneEach()
    {
        // Each short-lived thread ends with its slot holding a tracker whose spare is the segment its writer let go
        // of. The sweep takes those trackers back to the shared stack; were one both there and still reachable from a
        // slot, or pushed twice, two of the writers started at once below would share its spare segment.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 64 };
        using var stop = new CancellationTokenSource();
        int sweeps = 0;
        Thread sweeper = SegmentedBuffers.Started(() =>
        {
            // Sweeps while threads exit and writers take trackers: the dead threads' spares are taken back meanwhile.
            while (!stop.IsCancellationRequested)
            {
                _ = pool.GetStatistics();
                Interlocked.Increment(ref sweeps);
            }
        });
        for (int round = 0; round < 10; round++)
        {
            Thread[] exiting = [.. Enumerable.Range(0, 12).Select(t => SegmentedBuffers.Started(() =>
            {
                using var writer = new SegmentedBufferWriter(options);
                writer.Write(Filled((byte)t, 200));
                writer.Consume(100);
            }))];
            Array.ForEach(exiting, static thread => thread.Join());
            _ = pool.GetStatistics();

            // Twice as many sweeps as needed: a tracker pushed again by a later sweep would be handed out twice.
            _ = pool.GetStatistics();
            using var allStarted = new Barrier(12);
            Exception? failure = null;
            Thread[] writers = [.. Enumerable.Range(0, 12).Select(t => SegmentedBuffers.Started(() =>
            {
                byte id = (byte)(100 + t);
                var writer = new SegmentedBufferWriter(options);
                try
                {
                    writer.Write(Filled(id, 50));
                    Register(writer, id);
                    allStarted.SignalAndWait();
                    writer.Write(Filled(id, 150));
                    Register(writer, id);
                    allStarted.SignalAndWait();
                    AssertHoldsOnly(writer, id);
                    Unregister(writer, id);
                }
                catch (Exception exception)
                {
                    failure ??= exception;
                    allStarted.RemoveParticipant();
                }
                finally
                {
                    writer.Dispose();
                }
            }))];
            Array.ForEach(writers, static thread => thread.Join());
            Assert.Null(failure);
            Assert.Equal(0, pool.GetStatistics().Segmented.LiveBuffers);
        }

        stop.Cancel();
        sweeper.Join();
        Assert.True(sweeps > 10, "the sweeper never ran alongside");
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void WritersOfTwoPoolsOnOneThreadKeepEachPoolsBlocksAndBalanceBoth()
    {
        // The thread's one slot holds one pool's tracker at a time: the other pool's goes to its shared stack. The
        // spare segment object travels with a tracker across pools' writers; each block must still go back to its own pool.
        using var first = new TieredMemoryPool();
        using var second = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = true });
        SegmentedBufferOptions[] options =
        [
            new() { Pool = first, InitialSegmentSize = 64, MaxSegmentSize = 128 },
            new() { Pool = second, InitialSegmentSize = 64, MaxSegmentSize = 128 },
        ];
        var random = new Random(11);
        var live = new List<(SegmentedBufferWriter Writer, byte Id)>();
        for (int step = 0; step < 20_000; step++)
        {
            if (live.Count < 6)
            {
                byte fresh = (byte)Enumerable.Range(1, 250).First(candidate => live.TrueForAll(entry => entry.Id != candidate));
                live.Add((new SegmentedBufferWriter(options[step & 1]), fresh));
            }

            int pick = random.Next(live.Count);
            (SegmentedBufferWriter writer, byte id) = live[pick];
            if (random.Next(5) == 0)
            {
                Unregister(writer, id);
                live.RemoveAt(pick);
                writer.Dispose();
                continue;
            }

            SegmentedBuffers.ConsumeResetOrWrite(writer, id, random, maxWrite: 200);

            Register(writer, id);
            AssertHoldsOnly(writer, id);
        }

        live.ForEach(entry => Unregister(entry.Writer, entry.Id));
        live.ForEach(static entry => entry.Writer.Dispose());
        SegmentedBuffers.AssertBalanced(first);
        SegmentedBuffers.AssertBalanced(second);
    }

    [Fact]
    public void ADisposeRacingWritesConsumesAndResetsLeavesTheSpareToOneWriterAndBalances()
    {
        // The user thread is inside a guarded call (or between two) when this thread disposes: the release (and the
        // spare it leaves with the tracker) happens on the user's thread as it leaves, or here, and the tracker lands
        // in that thread's slot. A writer created right after on each thread then takes a tracker: never the same one.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 128 };
        int disposedSeen = 0;
        for (int round = 0; round < 300; round++)
        {
            var raced = new SegmentedBufferWriter(options);
            raced.Write(Filled(1, 300));
            using var start = new Barrier(2);
            using var after = new Barrier(2);
            Exception? unexpected = null;
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; ; i++)
                    {
                        // Room asked for and counted, never filled: a copy into it (outside any call) racing the
                        // dispose would write into a block gone back to the pool, the user's own misuse. Only the
                        // writer's own work (appends, releases, the spare) races here.
                        int length = 1 + (i * 31 % 200);
                        _ = raced.GetSpan(length);
                        raced.Advance(length);
                        if (i % 3 == 0)
                        {
                            raced.Consume(raced.Length / 2);
                        }
                        else if (i % 5 == 0)
                        {
                            raced.Reset();
                        }
                    }
                }
                catch (ObjectDisposedException)
                {
                    // The only way out of the loop: the dispose was seen.
                    Interlocked.Increment(ref disposedSeen);
                }
                catch (Exception exception)
                {
                    unexpected = exception;
                }

                try
                {
                    HoldAFreshWriterAcross(after, options, id: 3);
                }
                catch (Exception exception)
                {
                    unexpected ??= exception;
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 25);
            raced.Dispose();
            HoldAFreshWriterAcross(after, options, id: 2);
            user.Join();
            Assert.Null(unexpected);
        }

        Assert.Equal(300, disposedSeen);
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void ARevivedWriterWhoseTrackerWasRetiredKeepsItsSpareSegmentToItself()
    {
        // The writer let go of a segment (kept with its tracker) before it was collected; another object's finalizer
        // brings it back after the sweep retired the tracker. The spare stays with the retired tracker: the writers
        // created since must never get it while the revived one can still use it.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 64 };
        int usableRounds = 0;
        for (int round = 0; round < 20; round++)
        {
            long leakedBefore = pool.GetStatistics().Segmented.Leaked;
            SegmentedBufferWriter zombie = CollectARevivedWriterWithASpare(pool, options);
            Assert.Equal(leakedBefore + 1, pool.GetStatistics().Segmented.Leaked);
            var others = Enumerable.Range(0, 4).Select(_ => new SegmentedBufferWriter(options)).ToList();
            bool zombieUsable = true;
            for (int i = 0; i < 200; i++)
            {
                for (int w = 0; w < others.Count; w++)
                {
                    others[w].Write(Filled((byte)(10 + w), 1 + (i % 90)));
                    others[w].Consume(others[w].Length / 2);
                    Register(others[w], (byte)(10 + w));
                }

                if (zombieUsable)
                {
                    try
                    {
                        zombie.Write(Filled(9, 1 + (i % 90)));
                        zombie.Consume(zombie.Length / 2);
                        Register(zombie, 9);
                        AssertHoldsOnly(zombie, 9);
                    }
                    catch (ObjectDisposedException)
                    {
                        // The pool reclaimed the revived writer's blocks: it retires itself instead of touching them.
                        zombieUsable = false;
                    }
                }

                for (int w = 0; w < others.Count; w++)
                {
                    AssertHoldsOnly(others[w], (byte)(10 + w));
                }
            }

            usableRounds += zombieUsable ? 1 : 0;
            _segments.Clear();
            _blocks.Clear();
            zombie.Dispose();
            others.ForEach(static writer => writer.Dispose());
            SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
            Assert.Equal(leakedBefore + 1, statistics.Leaked);
            Assert.Equal(0, statistics.LiveBuffers);
            Assert.Equal(0, statistics.BytesHeld);
        }

        // The pool's idle delay (10 s) keeps the revived writer's blocks from being reclaimed in this test's time.
        Assert.True(usableRounds > 0, "the revived writer never used its retired tracker's spare: the attack was not exercised");
    }

    [Fact]
    public void StreamsLeakedOnThreadsThatExitedAreCountedOnceAndTheirTrackersNeverServeAnotherBuffer()
    {
        // Each thread drops a stream without dispose (its tracker held, a spare kept with it) and parks a disposed
        // writer's tracker in its slot, then exits. The sweep retires the first kind and takes the second back: the
        // writers started after hold only their own bytes, and nothing is counted twice.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 64 };
        long leakedBefore = pool.GetStatistics().Segmented.Leaked;
        Thread[] exiting = [.. Enumerable.Range(0, 16).Select(t => SegmentedBuffers.Started(() => LeakAStreamAndParkAWriter(options, (byte)t)))];
        Array.ForEach(exiting, static thread => thread.Join());
        GC.Collect();
        GC.WaitForPendingFinalizers();
        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        Assert.Equal(leakedBefore + 16, statistics.Leaked);
        Assert.Equal(0, statistics.LiveBuffers);
        Assert.Equal(0, statistics.BytesHeld);
        var writers = Enumerable.Range(0, 32).Select(_ => new SegmentedBufferWriter(options)).ToList();
        for (int i = 0; i < writers.Count; i++)
        {
            writers[i].Write(Filled((byte)(50 + i), 100));
            Register(writers[i], (byte)(50 + i));
        }

        for (int i = 0; i < writers.Count; i++)
        {
            AssertHoldsOnly(writers[i], (byte)(50 + i));
            Unregister(writers[i], (byte)(50 + i));
            writers[i].Dispose();
        }

        Assert.Equal(leakedBefore + 16, pool.GetStatistics().Segmented.Leaked);
        Assert.Equal(0, pool.GetStatistics().Segmented.LiveBuffers);
    }
}
