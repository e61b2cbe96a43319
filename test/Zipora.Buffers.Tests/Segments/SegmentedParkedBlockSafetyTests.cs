using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

#pragma warning disable CA2000

namespace Zipora.Buffers.Tests;

[CollectionDefinition(nameof(SegmentedParkedBlockSafetyTests), DisableParallelization = true)]
public sealed class SegmentedParkedBlockSafetyTestsRunAlone;

/// <summary>
/// Parked blocks against hostile uses: a buffer that took its thread's parked block, leaked, had the block reclaimed
/// and was then brought back by another object's finalizer and disposed; memory kept past its message. The races, the
/// dropped pools and the idle release are in <c>SegmentedParkedBlockSafetyTests.Races.cs</c>.
/// </summary>
/// <remarks>Alone: some tests read /proc/self/maps for a slab's unmapping, which another test's new slab could fill.</remarks>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed partial class SegmentedParkedBlockSafetyTests
{
    private const int Message = ParkedBlocks.Message;

    [Fact]
    public void ARevivedWriterWhoseTakenParkedBlockWasReclaimedDoesNotParkItAgainForAnotherBuffer()
    {
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        nint parked = ParkedBlocks.WriteMessage(options, 1);

        // A writer takes the parked block (and writes nothing), is dropped and brought back twice with no statistics
        // read meanwhile, so no sweep retires its tracker: the tracker, listed by the pool, keeps the spare's block
        // reachable, so it is never reclaimed (when the spare was the buffer's own, it was: the block went both to the
        // quarantine and, parked again by the late dispose, to the thread's next writer).
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
        AssertTheNextWritersBlockStaysItsOwn(pool, options, time);
    }

    [Fact]
    public void ALateDisposeOfARevivedWriterWhoseHeadBlockWasReclaimedDoesNotParkItForTheNextWriter()
    {
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };

        // A writer with one medium segment written, dropped, found unreachable twice (its block reclaimed into the
        // quarantine) and brought back each time; then disposed. Only its head holds a block.
        SegmentedBufferWriter zombie = RevivedTwiceWithoutASweep(options, written: 100);
        zombie.Dispose();
        AssertTheNextWritersBlockStaysItsOwn(pool, options, time);
    }

    [Fact]
    public void ARevivedWriterCountedAsLeakedWhoseTakenParkedBlockWasReclaimedIsRetiredAtItsNextCall()
    {
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        var box = new StrongBox<SegmentedBufferWriter?>();
        DropARevivableWriter(options, box, written: 0);
        GC.Collect();
        GC.WaitForPendingFinalizers();

        // The sweep counts it as leaked and lets its tracker go, which kept the spare's block reachable; then the block
        // is found unreachable twice (suspected, then reclaimed) while the writer is brought back each time.
        Assert.Equal(1, pool.GetStatistics().Segmented.Leaked);
        for (int collection = 0; collection < 2; collection++)
        {
            DropAgain(box);
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        SegmentedBufferWriter zombie = box.Value!;
        Assert.NotNull(zombie);
        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);

        // The quarantine then lets its block go, and the pool hands it out again.
        SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 2));
        var owners = new List<IMemoryOwner<byte>>();
        try
        {
            RentMany(pool, owners);
            _ = Assert.Throws<ObjectDisposedException>(() => zombie.GetSpan(Message));
            AssertNoOwnerWasWrittenBeyondWhatRentManyFilled(owners);
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
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
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
        Assert.NotEqual(0, ParkedBlocks.WriteMessage(options, 2));
        Assert.NotEqual(0, ParkedBlocks.WriteMessage(options, 3));
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void MemoryKeptPastItsMessageRefusesEveryUseWhileItsBlockIsParked()
    {
        using var pool = ParkedBlocks.NewPool(new FakeTimeProvider());
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

    /// <summary>
    /// The thread's next writer must not be handed a block the quarantine holds: once the quarantine lets the reclaimed
    /// block go, nothing the pool hands out, on this thread or another, may be the writer's block, and the writer's
    /// bytes stay its own.
    /// </summary>
    private static void AssertTheNextWritersBlockStaysItsOwn(TieredMemoryPool pool, SegmentedBufferOptions options, FakeTimeProvider time)
    {
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
            Assert.True(next.GetReadOnlySequence().FirstSpan.IndexOfAnyExcept((byte)0x11) < 0, "another owner wrote into the writer's block");
        }
        finally
        {
            owners.ForEach(static owner => owner.Dispose());
        }
    }

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

    /// <summary>Every owner <see cref="RentMany"/> rented still holds only what it filled its block with.</summary>
    private static void AssertNoOwnerWasWrittenBeyondWhatRentManyFilled(List<IMemoryOwner<byte>> owners)
    {
        foreach (IMemoryOwner<byte> owner in owners)
        {
            Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)0x22) < 0, "the revived writer wrote into another owner's block");
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

    /// <summary>Puts the writer it held where the test finds it again, once the collection that found both unreachable is over.</summary>
    private sealed class Reviver(SegmentedBufferWriter writer, StrongBox<SegmentedBufferWriter?> box)
    {
        ~Reviver() => box.Value = writer;
    }
}
