using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

#pragma warning disable CA2000

namespace Zipora.Buffers.Tests;

/// <summary>
/// Parked blocks against hostile uses: a buffer that took its thread's parked block, leaked, had the block reclaimed
/// and was then brought back by another object's finalizer and disposed.
/// </summary>
public sealed class SegmentedParkedBlockSafetyTests
{
    private const int Message = 1024;

    [Fact]
    public void ARevivedWriterWhoseTakenParkedBlockWasReclaimedDoesNotParkItAgainForAnotherBuffer()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
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
    private static void DropARevivableWriter(SegmentedBufferOptions options, StrongBox<SegmentedBufferWriter?> box) =>
        _ = new Reviver(new SegmentedBufferWriter(options), box);

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
