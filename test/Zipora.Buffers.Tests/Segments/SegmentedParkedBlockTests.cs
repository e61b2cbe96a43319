using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A message that ended in one medium block leaves that block parked in its thread's cache, for the thread's next
/// message of that size: it rents nothing and returns nothing. A parked block is the pool's cached memory: counted as
/// cached, not in use, and taken back by every trim, by the exit of its thread and by the pool's end, from outside the
/// pool too (its slab is unmapped); and never given to two buffers, whatever races it.
/// </summary>
/// <remarks>Alone: some tests read /proc/self/maps for a slab's unmapping, which another test's new slab could fill.</remarks>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class SegmentedParkedBlockTests
{
    private const int Message = ParkedBlocks.Message;

    [Fact]
    public void AThreadsNextOneSegmentMessageTakesTheBlockItsLastOneParkedAndRentsNothing()
    {
        using var pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        ParkedBlocks.WriteMessage(options, 1);
        long rents = pool.GetStatistics().Medium.Rents;
        for (int i = 0; i < 500; i++)
        {
            ParkedBlocks.WriteMessage(options, (byte)i);
            StreamMessage(options, (byte)i);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(rents, statistics.Medium.Rents);

        // Parked: the pool's cached memory, not a buffer's.
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);
        SizeClassStatistics row = statistics.SizeHistogram.First(static row => row is { Tier: "medium", ClassSize: 4096 });
        Assert.Equal(0, row.BuffersInUse);
        Assert.True(row.Cached >= 1, $"the parked block is cached: {row.Cached}");

        // A live buffer that took the parked block holds it, written to or not.
        using var writer = new SegmentedBufferWriter(options);
        statistics = pool.GetStatistics();
        Assert.Equal(4096, statistics.Segmented.BytesHeld);
        Assert.Equal(4096, statistics.BytesInUse);
    }

    [Theory]
    [InlineData(1024, 1)]
    [InlineData(1024, 1024)]
    [InlineData(4096, 4097)]
    [InlineData(4096, 10000)]
    [InlineData(16384, 1)]
    [InlineData(3000, 100)]
    public void AFirstSegmentGetsTheClassItsSizeAsksForWhateverThePreviousMessageParked(int initialSegmentSize, int sizeHint) =>
        AFirstSegmentGetsTheClassItsSizeAsksForAfterAMessageOf(4096, initialSegmentSize, sizeHint);

    [Theory]
    [InlineData(1024, 600, 1)]
    [InlineData(1024, 513, 1)]
    [InlineData(1024, 1, 900)]
    [InlineData(16384, 9000, 1)]
    public void AFirstSegmentGetsTheClassItsSizeAsksForAfterAMessageOf(int parkedSegmentSize, int initialSegmentSize, int sizeHint)
    {
        using var pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = initialSegmentSize };
        int expected;
        using (var fresh = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false }))
        {
            using var alone = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = fresh, InitialSegmentSize = initialSegmentSize });
            expected = alone.GetMemory(sizeHint).Length;
        }

        // A message of one medium class leaves its block parked; then the message under test.
        _ = ParkedBlocks.WriteMessage(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = parkedSegmentSize }, 1);
        using var writer = new SegmentedBufferWriter(options);
        Memory<byte> memory = writer.GetMemory(sizeHint);
        Assert.True(memory.Length >= sizeHint, $"asked for {sizeHint}, got {memory.Length}");
        Assert.Equal(expected, memory.Length);
    }

    [Theory]
    [InlineData(0, 2 * 1024 * 1024)]
    [InlineData(128, 0)]
    [InlineData(128, 32 * 1024)]
    public void WithoutRoomInTheThreadCachesForItsClassAThreadKeepsNoMediumBlockBetweenMessages(int threadCacheMaxBuffers, int threadCacheMaxBytes)
    {
        // ThreadCacheMaxBuffers 0 turns per-thread caching off; ThreadCacheMaxBytes bounds the medium bytes a thread
        // keeps (32 KB split over the medium classes leaves the 16 KB class none). Each message then rents its block.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = SafetyCases.IdleDelay,
            EnableHugepages = false,
            ThreadCacheMaxBuffers = threadCacheMaxBuffers,
            ThreadCacheMaxBytes = threadCacheMaxBytes,
        });
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16384 };
        _ = ParkedBlocks.WriteMessage(options, 1);
        long rents = pool.GetStatistics().Medium.Rents;
        for (int i = 0; i < 10; i++)
        {
            _ = ParkedBlocks.WriteMessage(options, (byte)i);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(rents + 10, statistics.Medium.Rents);
        SizeClassStatistics row = statistics.SizeHistogram.First(static row => row is { Tier: "medium", ClassSize: 16384 });
        Assert.Equal(0, row.BuffersInUse);
    }

    [Fact]
    public void ATrimTakesTheParkedBlockBackAndItsSlabIsUnmappedOnceTheDelayHasPassed()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint block = ParkedBlocks.WriteMessage(options, 7);
        Assert.Equal(block, ParkedBlocks.WriteMessage(options, 8));
        Assert.True(ProcessMappings.IsMapped(block, Message), "the parked block is mapped");

        pool.Trim();
        Assert.Equal(0, pool.GetStatistics().Medium.BytesRetained);
        Assert.True(ParkedBlocks.UnmappedWithin(time, block), $"the parked block's slab stayed mapped after a trim: {ProcessMappings.Describe(block, Message)}");
    }

    [Fact]
    public void TheBlockParkedByAThreadThatExitedIsTakenBackAndItsSlabUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint block = 0;
        var thread = new Thread(() => block = ParkedBlocks.WriteMessage(options, 9));
        thread.Start();
        thread.Join();

        // Nothing on this thread ever parked a block: only the exited thread's cache holds one.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        pool.Trim();
        Assert.True(ParkedBlocks.UnmappedWithin(time, block), $"the exited thread's parked block kept its slab mapped: {ProcessMappings.Describe(block, Message)}");
    }

    [Fact]
    public void APoolWhoseBufferParkedABlockOnThisThreadIsCollectedAndTheBlockUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        (WeakReference pool, nint block) = ParkABlockAndDropThePool(time);
        Collect();
        Assert.False(pool.IsAlive, "the block parked on this thread kept its dropped pool reachable");
        Assert.True(ParkedBlocks.UnmappedWithin(time, block), $"a dropped pool's parked block stayed mapped: {ProcessMappings.Describe(block, Message)}");
    }

    [Fact]
    public void AfterThePoolsDisposalABufferThatTookTheParkedBlockStillWritesAndReadsItAndGivesItBack()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint block = ParkedBlocks.WriteMessage(options, 3);
        var writer = new SegmentedBufferWriter(options);
        pool.Dispose();

        // The writer holds the block it took: the disposal left it alone, and parks nothing from now on.
        Span<byte> span = writer.GetSpan(Message);
        span[..Message].Fill(0x42);
        writer.Advance(Message);
        Assert.True(writer.GetReadOnlySequence().FirstSpan.SequenceEqual(Bytes(0x42)));
        writer.Dispose();
        Assert.True(ParkedBlocks.UnmappedWithin(time, block), $"the block a buffer gave back after the pool's disposal stayed mapped: {ProcessMappings.Describe(block, Message)}");
        Assert.Equal(0, pool.GetStatistics().LeaksReclaimed);
    }

    [Fact]
    public void TrimsRacingMessagesOnManyThreadsNeverGiveOneBlockToTwoBuffers()
    {
        using var pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        var failures = new List<string>();
        var stop = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(1.5);
        long messages = 0;
        void Messages(int seed)
        {
            for (int i = 0; stop.Elapsed < deadline; i++)
            {
                // Each message is stamped with its own byte and checked after the others had a chance to run.
                byte stamp = (byte)((seed * 31) + i);
                using var writer = new SegmentedBufferWriter(options);
                writer.GetSpan(Message)[..Message].Fill(stamp);
                writer.Advance(Message);
                Thread.Yield();
                ReadOnlySequence<byte> written = writer.GetReadOnlySequence();
                if (written.Length != Message || written.FirstSpan.IndexOfAnyExcept(stamp) >= 0)
                {
                    lock (failures)
                    {
                        failures.Add($"thread {seed}, message {i}: another buffer wrote into this one's block");
                    }
                }

                Interlocked.Increment(ref messages);
            }
        }

        var threads = new List<Thread>();
        for (int seed = 0; seed < 3; seed++)
        {
            int threadSeed = seed;
            threads.Add(new Thread(() => Messages(threadSeed)));
        }

        // Threads that come and go, each parking a block and exiting, and a thread trimming all along.
        threads.Add(new Thread(() =>
        {
            for (int seed = 100; stop.Elapsed < deadline; seed++)
            {
                var churn = new Thread(() => ParkedBlocks.WriteMessage(options, (byte)seed));
                churn.Start();
                churn.Join();
            }
        }));
        threads.Add(new Thread(() =>
        {
            while (stop.Elapsed < deadline)
            {
                pool.Trim();
            }
        }));
        threads.ForEach(static thread => thread.Start());
        threads.ForEach(static thread => thread.Join());

        Assert.True(failures.Count == 0, $"{failures.Count} of {messages} messages: {string.Join("; ", failures.GetRange(0, Math.Min(5, failures.Count)))}");
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.True(messages > 100, $"only {messages} messages ran");
    }

    private static void StreamMessage(SegmentedBufferOptions options, byte stamp)
    {
        using var stream = new SegmentedMemoryStream(options);
        stream.Write(Bytes(stamp));
        stream.Position = 0;
        byte[] read = new byte[Message];
        stream.ReadExactly(read);
        Assert.True(read.AsSpan().SequenceEqual(Bytes(stamp)));
    }

    private static byte[] Bytes(byte stamp)
    {
        byte[] bytes = new byte[Message];
        bytes.AsSpan().Fill(stamp);
        return bytes;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Pool, nint Block) ParkABlockAndDropThePool(FakeTimeProvider time)
    {
        var pool = ParkedBlocks.NewPool(time);
        nint block = ParkedBlocks.WriteMessage(new SegmentedBufferOptions { Pool = pool }, 5);
        return (new WeakReference(pool), block);
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
