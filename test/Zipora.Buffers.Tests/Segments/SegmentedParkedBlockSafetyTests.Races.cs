using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>Parked blocks racing trims, statistics, thread churn and disposal; pools dropped with blocks parked; the idle release.</summary>
public sealed partial class SegmentedParkedBlockSafetyTests
{
    /// <summary>
    /// The statistics count the parked blocks by the capacity of each thread's parked segment, read without the thread's
    /// handshake; the thread may take that segment meanwhile and give it a block of another tier (a large first request
    /// replaces the kept block in the same segment). The count is racy by design, but it must not throw: it once
    /// indexed the medium classes with a large block's class (IndexOutOfRangeException out of GetStatistics and out of
    /// the meter's observable instruments, seen in a CI run).
    /// </summary>
    [Fact]
    public void StatisticsReadWhileTheParkedSegmentGetsALargeBlockNeverThrow()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        Exception? thrown = null;
        long reads = 0;
        var reader = new Thread(() =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    _ = pool.GetStatistics();
                    reads++;
                }
            }
            catch (Exception error)
            {
                thrown = error;
            }
        });
        reader.Start();
        while (!stop.IsCancellationRequested && thrown is null)
        {
            // A 1 KB message parks its 4 KB block; the next writer takes that segment and swaps in a 128 KB block.
            _ = ParkedBlocks.WriteMessage(options, 1);
            using var large = new SegmentedBufferWriter(options);
            large.GetMemory(100_000).Span[0] = 2;
            large.Advance(1);
        }

        reader.Join();
        Assert.True(thrown is null, $"GetStatistics threw after {reads} reads: {thrown}");
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void MessagesHandedBetweenThreadsRacingTrimsStatisticsChurnAndThePoolsDisposalShareNoBlockAndLeaveEverySlabUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        var failures = new List<string>();
        var blocks = new HashSet<nint>();
        var handoff = new System.Collections.Concurrent.BlockingCollection<(SegmentedBufferWriter Writer, byte Stamp)>(4);
        using var stop = new CancellationTokenSource();
        void Note(string failure)
        {
            lock (failures)
            {
                failures.Add(failure);
            }
        }

        void Check(SegmentedBufferWriter writer, byte stamp)
        {
            ReadOnlySequence<byte> written = writer.GetReadOnlySequence();
            if (written.Length != Message || written.FirstSpan.IndexOfAnyExcept(stamp) >= 0)
            {
                Note($"stamp {stamp}: another buffer wrote into this one's block");
            }
        }

        SegmentedBufferWriter? Written(byte stamp)
        {
            try
            {
                var writer = new SegmentedBufferWriter(options);
                Memory<byte> memory = writer.GetMemory(Message);
                memory.Span[..Message].Fill(stamp);
                writer.Advance(Message);
                lock (blocks)
                {
                    _ = blocks.Add(SegmentedBuffers.AddressOf(memory));
                }

                return writer;
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
        }

        var threads = new List<Thread>
        {
            // Writes on one thread, disposes on another: blocks park on the thread that disposes.
            new(() =>
            {
                for (int i = 0; !stop.IsCancellationRequested; i++)
                {
                    if (Written((byte)i) is { } writer)
                    {
                        handoff.Add((writer, (byte)i));
                    }
                }

                handoff.CompleteAdding();
            }),
            new(() =>
            {
                foreach ((SegmentedBufferWriter writer, byte stamp) in handoff.GetConsumingEnumerable())
                {
                    using SegmentedBufferWriter? own = Written((byte)(stamp + 1));
                    Thread.Yield();
                    Check(writer, stamp);
                    if (own is not null)
                    {
                        Check(own, (byte)(stamp + 1));
                    }

                    writer.Dispose();
                }
            }),
            new(() =>
            {
                for (int seed = 0; !stop.IsCancellationRequested; seed++)
                {
                    var churn = new Thread(() =>
                    {
                        using SegmentedBufferWriter? writer = Written((byte)seed);
                    });
                    churn.Start();
                    churn.Join();
                }
            }),
            new(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    pool.Trim();
                    _ = pool.GetStatistics();
                }
            }),
        };
        threads.ForEach(static thread => thread.Start());
        Thread.Sleep(700);
        pool.Dispose();
        Thread.Sleep(200);
        stop.Cancel();
        threads.ForEach(static thread => thread.Join());

        Assert.True(failures.Count == 0, $"{failures.Count} failures: {string.Join("; ", failures.GetRange(0, Math.Min(5, failures.Count)))}");
        Assert.True(blocks.Count > 0, "no message ran");
        List<nint> mapped = ParkedBlocks.StillMappedAfterTheDelays(time, blocks);
        Assert.True(mapped.Count == 0, $"{mapped.Count} of {blocks.Count} blocks still mapped after the pool's disposal: {string.Join("; ", mapped.Take(3).Select(static block => ProcessMappings.Describe(block, Message)))}");
    }

    [Fact]
    public void APoolDroppedWhileALiveThreadAndAnotherPoolsBuffersParkedBlocksIsCollectedAndItsBlocksUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var other = ParkedBlocks.NewPool(time);
        var otherOptions = new SegmentedBufferOptions { Pool = other };
        using var parked = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var found = new StrongBox<(WeakReference Pool, nint Mine, nint Theirs)>();
        Thread owner = SegmentedBuffers.Started(() =>
        {
            // This thread alternates two pools, and parks a block of each; it stays alive while the first is dropped.
            found.Value = ParkOnTwoPools(time, otherOptions);
            parked.Set();
            release.Wait();
            _ = ParkedBlocks.WriteMessage(otherOptions, 9);
        });
        parked.Wait();
        (WeakReference pool, nint mine, nint theirs) = found.Value;
        found.Value = default;
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.False(pool.IsAlive, "the blocks parked on a live thread kept their dropped pool reachable");
        bool unmapped = ParkedBlocks.UnmappedWithin(time, mine);

        release.Set();
        owner.Join();
        Assert.True(unmapped, $"a dropped pool's block parked on a live thread stayed mapped: {ProcessMappings.Describe(mine, Message)}");
        Assert.True(ProcessMappings.IsMapped(theirs, Message), "the other pool's parked block went with the dropped one");
        SegmentedBuffers.AssertBalanced(other);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Pool, nint Mine, nint Theirs) ParkOnTwoPools(FakeTimeProvider time, SegmentedBufferOptions otherOptions)
    {
        var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint mine = 0;
        nint theirs = 0;
        for (int i = 0; i < 4; i++)
        {
            mine = ParkedBlocks.WriteMessage(options, (byte)i);
            theirs = ParkedBlocks.WriteMessage(otherOptions, (byte)i);
        }

        return (new WeakReference(pool), mine, theirs);
    }

    [Fact]
    public void AThreadWritingMessagesAllAlongKeepsItsParkedBlockThroughTheIdleRelease()
    {
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint first = ParkedBlocks.WriteMessage(options, 1);
        long misses = pool.GetStatistics().Medium.CacheMisses;
        for (int step = 0; step < 20; step++)
        {
            // A message every tick of the idle clock: the block is never idle for a whole delay.
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(first, ParkedBlocks.WriteMessage(options, (byte)i));
            }

            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
        }

        Assert.Equal(misses, pool.GetStatistics().Medium.CacheMisses);
    }
}
