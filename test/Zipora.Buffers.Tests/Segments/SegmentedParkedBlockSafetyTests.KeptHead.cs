using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

#pragma warning disable CA2000

namespace Zipora.Buffers.Tests;

/// <summary>A writer that took its thread's parked block, leaked and brought back by another object's finalizer.</summary>
public sealed partial class SegmentedParkedBlockSafetyTests
{
    /// <summary>
    /// A writer takes the parked block and writes nothing; it is dropped and brought back by another object's finalizer
    /// twice, with no statistics read (no sweep retires its tracker). The block it took must not have been reclaimed
    /// as leaked while the writer can still hand it out: the span its next GetSpan gives, written after the quarantine's
    /// delay and the pool's next rents, must not be another renter's block.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void ARevivedWriterThatTookTheParkedBlockNeverHandsOutABlockThePoolReclaimed(int written)
    {
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        SegmentedBufferWriter zombie = RevivedTwiceWithoutASweep(options, written);
        var owners = new List<IMemoryOwner<byte>>();
        try
        {
            Span<byte> span;
            try
            {
                span = zombie.GetSpan(Message);
            }
            catch (ObjectDisposedException)
            {
                // Refused: the writer found its block reclaimed.
                return;
            }

            // The span is written before the next call on the writer, as IBufferWriter allows; meanwhile the pool rents.
            SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 2));
            RentMany(pool, owners);
            span[..Message].Fill(0x33);
            AssertNoOwnerWasWrittenBeyondWhatRentManyFilled(owners);
        }
        finally
        {
            owners.ForEach(static owner => owner.Dispose());
            zombie.Dispose();
        }
    }

    /// <summary>
    /// The same revived writer, with bytes written: once the pool has reclaimed its block, it reads it no more either
    /// (its sequence, its copies and its array would show another renter's bytes once the quarantine lets the block
    /// go): each refuses with <see cref="ObjectDisposedException"/>.
    /// </summary>
    [Fact]
    public void ARevivedWriterWhoseBlockThePoolReclaimedNoLongerReadsIt()
    {
        using var pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        SegmentedBufferWriter zombie = RevivedTwiceWithoutASweep(options, 100);
        Assert.Throws<ObjectDisposedException>(() => zombie.GetReadOnlySequence());
        Assert.Throws<ObjectDisposedException>(() => zombie.ToArray());
        Assert.Throws<ObjectDisposedException>(() => zombie.CopyTo(new byte[100]));
        zombie.Dispose();
    }

    /// <summary>
    /// A writer of <paramref name="written"/> bytes that took the thread's parked block, dropped and brought back by
    /// another object's finalizer twice, with no statistics read (no sweep retires its tracker): the pool has reclaimed
    /// its block as leaked meanwhile.
    /// </summary>
    private static SegmentedBufferWriter RevivedTwiceWithoutASweep(SegmentedBufferOptions options, int written)
    {
        var box = new StrongBox<SegmentedBufferWriter?>();
        DropARevivableWriter(options, box, written);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        DropAgain(box);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        SegmentedBufferWriter zombie = box.Value!;
        Assert.NotNull(zombie);
        return zombie;
    }
}
