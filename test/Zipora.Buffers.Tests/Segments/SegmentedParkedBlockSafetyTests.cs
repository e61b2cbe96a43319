using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

#pragma warning disable CA2000

namespace Zipora.Buffers.Tests;

[CollectionDefinition(nameof(SegmentedParkedBlockSafetyTests), DisableParallelization = true)]
public sealed class SegmentedParkedBlockSafetyTestsRunAlone;

/// <summary>
/// Parked blocks against hostile uses: a buffer that took its thread's parked block, leaked, had the block reclaimed
/// and was then brought back by another object's finalizer and disposed.
/// </summary>
/// <remarks>Alone: some tests read /proc/self/maps for a slab's unmapping, which another test's new slab could fill.</remarks>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class SegmentedParkedBlockSafetyTests
{
    private const int Message = 1024;

    [Fact]
    public void ARevivedWriterWhoseTakenParkedBlockWasReclaimedDoesNotParkItAgainForAnotherBuffer()
    {
        var time = new FakeTimeProvider();
        using var pool = NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint parked = WriteMessage(options, 1);

        // A writer takes the parked block (and writes nothing), is dropped, found unreachable once (the block is
        // suspected), brought back, dropped again, found unreachable again (the block is reclaimed into the
        // quarantine), and brought back again. No statistics are read meanwhile: no sweep retires its tracker.
        var box = new StrongBox<SegmentedBufferWriter?>();
        DropARevivableWriter(options, box);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.NotNull(box.Value);
        DropAgain(box);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        SegmentedBufferWriter zombie = box.Value!;
        Assert.NotNull(zombie);
        zombie.Dispose();

        // The next writer of this thread must not be handed the block the quarantine holds.
        using var next = new SegmentedBufferWriter(options);
        Memory<byte> memory = next.GetMemory(Message);
        nint address = SegmentedBuffers.AddressOf(memory);
        memory.Span[..Message].Fill(0x11);
        next.Advance(Message);

        // Once the quarantine lets the reclaimed block go, nothing the pool hands out, on this thread or another, may
        // be that block, and the writer's block stays its own.
        SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 2));
        var owners = new List<IMemoryOwner<byte>>();
        try
        {
            Thread other = SegmentedBuffers.Started(() => RentMany(pool, owners));
            other.Join();
            RentMany(pool, owners);
            List<nint> addresses = owners.ConvertAll(static owner => SegmentedBuffers.AddressOf(owner.Memory));
            Assert.DoesNotContain(address, addresses);
            Assert.True(next.GetReadOnlySequence().FirstSpan.IndexOfAnyExcept((byte)0x11) < 0, "another owner wrote into the writer's block");
        }
        finally
        {
            owners.ForEach(static owner => owner.Dispose());
        }
    }

    [Fact]
    public void ALateDisposeOfARevivedWriterWhoseHeadBlockWasReclaimedDoesNotParkItForTheNextWriter()
    {
        var time = new FakeTimeProvider();
        using var pool = NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };

        // A writer with one medium segment written, dropped, found unreachable twice (its block reclaimed into the
        // quarantine) and brought back each time; then disposed. Only its head holds a block.
        var box = new StrongBox<SegmentedBufferWriter?>();
        DropARevivableWriter(options, box, written: 100);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        DropAgain(box);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        SegmentedBufferWriter zombie = box.Value!;
        Assert.NotNull(zombie);
        zombie.Dispose();

        using var next = new SegmentedBufferWriter(options);
        Memory<byte> memory = next.GetMemory(Message);
        nint address = SegmentedBuffers.AddressOf(memory);
        memory.Span[..Message].Fill(0x11);
        next.Advance(Message);
        SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 2));
        var owners = new List<IMemoryOwner<byte>>();
        try
        {
            Thread other = SegmentedBuffers.Started(() => RentMany(pool, owners));
            other.Join();
            RentMany(pool, owners);
            List<nint> addresses = owners.ConvertAll(static owner => SegmentedBuffers.AddressOf(owner.Memory));
            Assert.DoesNotContain(address, addresses);
        }
        finally
        {
            owners.ForEach(static owner => owner.Dispose());
        }
    }

    [Fact]
    public void ARevivedWriterCountedAsLeakedWhoseTakenParkedBlockWasReclaimedIsRetiredAtItsNextCall()
    {
        var time = new FakeTimeProvider();
        using var pool = NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = WriteMessage(options, 1);
        var box = new StrongBox<SegmentedBufferWriter?>();
        DropARevivableWriter(options, box, written: 0);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        DropAgain(box);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        SegmentedBufferWriter zombie = box.Value!;
        Assert.NotNull(zombie);

        // The sweep counts it as leaked; the quarantine then lets its block go, and the pool hands it out again.
        Assert.Equal(1, pool.GetStatistics().Segmented.Leaked);
        SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 2));
        var owners = new List<IMemoryOwner<byte>>();
        try
        {
            RentMany(pool, owners);
            _ = Assert.Throws<ObjectDisposedException>(() => zombie.GetSpan(Message));
            foreach (IMemoryOwner<byte> owner in owners)
            {
                Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)0x22) < 0, "the revived writer wrote into another owner's block");
            }
        }
        finally
        {
            owners.ForEach(static owner => owner.Dispose());
            zombie.Dispose();
        }
    }

    [Fact]
    public void ALeakedWriterThatTookTheParkedBlockHasItReclaimedOnceAndThePoolBalances()
    {
        var time = new FakeTimeProvider();
        using var pool = NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = WriteMessage(options, 1);
        DropAWriterThatTookTheParkedBlock(options);
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.LeaksReclaimed);
        Assert.Equal(1, statistics.Segmented.Leaked);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.BytesQuarantined);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);

        // The block serves the next messages as any other.
        Assert.NotEqual(0, WriteMessage(options, 2));
        Assert.NotEqual(0, WriteMessage(options, 3));
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void MemoryKeptPastItsMessageRefusesEveryUseWhileItsBlockIsParked()
    {
        using var pool = NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        Memory<byte> kept;
        using (var writer = new SegmentedBufferWriter(options))
        {
            kept = writer.GetMemory(Message);
            kept.Span[0] = 1;
            writer.Advance(1);
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
        _ = Assert.Throws<ObjectDisposedException>(() => kept.Span[0] = 2);
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
        using var pool = NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = initialSegmentSize };
        int expected;
        using (var fresh = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false }))
        {
            using var alone = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = fresh, InitialSegmentSize = initialSegmentSize });
            expected = alone.GetMemory(sizeHint).Length;
        }

        // A message of one medium class leaves its block parked; then the message under test.
        _ = WriteMessage(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = parkedSegmentSize }, 1);
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
        _ = WriteMessage(options, 1);
        long rents = pool.GetStatistics().Medium.Rents;
        for (int i = 0; i < 10; i++)
        {
            _ = WriteMessage(options, (byte)i);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(rents + 10, statistics.Medium.Rents);
        SizeClassStatistics row = statistics.SizeHistogram.First(static row => row is { Tier: "medium", ClassSize: 16384 });
        Assert.Equal(0, row.BuffersInUse);
    }

    [Fact]
    public void MessagesHandedBetweenThreadsRacingTrimsStatisticsChurnAndThePoolsDisposalShareNoBlockAndLeaveEverySlabUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        var pool = NewPool(time);
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
        for (int step = 0; step < 40 && blocks.Any(static block => ProcessMappings.IsMapped(block, Message)); step++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            Thread.Sleep(10);
        }

        List<nint> mapped = blocks.Where(static block => ProcessMappings.IsMapped(block, Message)).ToList();
        Assert.True(mapped.Count == 0, $"{mapped.Count} of {blocks.Count} blocks still mapped after the pool's disposal: {string.Join("; ", mapped.Take(3).Select(static block => ProcessMappings.Describe(block, Message)))}");
    }

    [Fact]
    public void APoolDroppedWhileALiveThreadAndAnotherPoolsBuffersParkedBlocksIsCollectedAndItsBlocksUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var other = NewPool(time);
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
            _ = WriteMessage(otherOptions, 9);
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
        bool unmapped = false;
        for (int step = 0; step < 40 && !unmapped; step++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            unmapped = !ProcessMappings.IsMapped(mine, Message);
            Thread.Sleep(10);
        }

        release.Set();
        owner.Join();
        Assert.True(unmapped, $"a dropped pool's block parked on a live thread stayed mapped: {ProcessMappings.Describe(mine, Message)}");
        Assert.True(ProcessMappings.IsMapped(theirs, Message), "the other pool's parked block went with the dropped one");
        SegmentedBuffers.AssertBalanced(other);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Pool, nint Mine, nint Theirs) ParkOnTwoPools(FakeTimeProvider time, SegmentedBufferOptions otherOptions)
    {
        var pool = NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint mine = 0;
        nint theirs = 0;
        for (int i = 0; i < 4; i++)
        {
            mine = WriteMessage(options, (byte)i);
            theirs = WriteMessage(otherOptions, (byte)i);
        }

        return (new WeakReference(pool), mine, theirs);
    }

    [Fact]
    public void AThreadWritingMessagesAllAlongKeepsItsParkedBlockThroughTheIdleRelease()
    {
        var time = new FakeTimeProvider();
        using var pool = NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint first = WriteMessage(options, 1);
        long misses = pool.GetStatistics().Medium.CacheMisses;
        for (int step = 0; step < 20; step++)
        {
            // A message every tick of the idle clock: the block is never idle for a whole delay.
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(first, WriteMessage(options, (byte)i));
            }

            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
        }

        Assert.Equal(misses, pool.GetStatistics().Medium.CacheMisses);
    }

    private static TieredMemoryPool NewPool(FakeTimeProvider time) =>
        new(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropAWriterThatTookTheParkedBlock(SegmentedBufferOptions options)
    {
        var writer = new SegmentedBufferWriter(options);
        writer.Write(new byte[100]);
    }

    private static void RentMany(TieredMemoryPool pool, List<IMemoryOwner<byte>> owners)
    {
        for (int i = 0; i < 64; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(4096);
            owner.Memory.Span.Fill(0x22);
            lock (owners)
            {
                owners.Add(owner);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropARevivableWriter(SegmentedBufferOptions options, StrongBox<SegmentedBufferWriter?> box, int written = 0)
    {
        var writer = new SegmentedBufferWriter(options);
        if (written > 0)
        {
            writer.Write(new byte[written]);
        }

        _ = new Reviver(writer, box);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropAgain(StrongBox<SegmentedBufferWriter?> box)
    {
        SegmentedBufferWriter writer = box.Value!;
        box.Value = null;
        _ = new Reviver(writer, box);
    }

    /// <summary>A one-segment message written and let go of; returns the address of its block.</summary>
    private static nint WriteMessage(SegmentedBufferOptions options, byte stamp)
    {
        using var writer = new SegmentedBufferWriter(options);
        Memory<byte> memory = writer.GetMemory(Message);
        memory.Span[..Message].Fill(stamp);
        writer.Advance(Message);
        return SegmentedBuffers.AddressOf(memory);
    }

    /// <summary>Puts the writer it held where the test finds it again, once the collection that found both unreachable is over.</summary>
    private sealed class Reviver(SegmentedBufferWriter writer, StrongBox<SegmentedBufferWriter?> box)
    {
        ~Reviver() => box.Value = writer;
    }
}
