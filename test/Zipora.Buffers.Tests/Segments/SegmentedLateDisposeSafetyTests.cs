using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A late dispose on the leak path: a writer or stream whose own finalizer ran and that is then disposed (by the
/// finalizer of an object that held it: finalization order is not defined) keeps the counts at zero and never gives
/// back a block the pool reclaimed and rented again. Forces full collections, so it runs alone.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SegmentedLateDisposeSafetyTests
{
    private const int Pairs = 40;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ABufferDisposedByAnotherObjectsFinalizerKeepsTheCountsAtZero(bool stream)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        if (stream)
        {
            MakeStreamHolders(pool);
        }
        else
        {
            MakeWriterHolders(pool);
        }

        Collect();

        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        TestContext.Current.TestOutputHelper?.WriteLine(statistics.ToString());
        Assert.Equal(0, statistics.LiveBuffers);
        Assert.Equal(0, statistics.BytesHeld);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void AWriterBroughtBackAfterItWasCountedLeakedAndThenDisposedKeepsTheCountsAtZero()
    {
        // The writer has no finalizer: another object's finalizer is what brings a collected writer back.
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        SegmentedBufferWriter? writer = SegmentedBuffers.CollectARevivedWriter(new SegmentedBufferOptions { Pool = pool }, written: 10_000);
        Assert.NotNull(writer);
        Assert.Equal(1, pool.GetStatistics().Segmented.Leaked);
        writer.Dispose();

        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        TestContext.Current.TestOutputHelper?.WriteLine(statistics.ToString());
        Assert.Equal(0, statistics.LiveBuffers);
        Assert.Equal(0, statistics.BytesHeld);
        Assert.Equal(1, statistics.Leaked);
    }

    [Fact]
    public void AWriterDisposedAfterThePoolReclaimedAndRentedAgainItsBlockNeverTakesTheNewRentersBlock()
    {
        // The pool's own owners carry a generation, so an owner a user's finalizer brings back after its block was
        // reclaimed as a leak "can no longer reach the block's next renter". A segment holds the bare block.
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default, time);
        nint address = DropALateDisposer(pool);

        (IMemoryOwner<byte> innocent, System.Collections.Generic.List<IMemoryOwner<byte>> others) = ReclaimAndRentAgain(pool, time, address);
        long inUseBefore = pool.GetStatistics().BytesInUse;

        // Third collection: the disposer finally disposes the writer it held, then rents the size (as any thread may).
        LateDisposer.Pool = pool;
        LateDisposer.Target = address;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.True(LateDisposer.Disposed, "the late disposer never ran");

        long inUseAfter = pool.GetStatistics().BytesInUse - LateDisposer.RentedBytes;
        Assert.True(
            !LateDisposer.GotTheBlock && inUseAfter == inUseBefore,
            $"the late dispose returned the innocent renter's block: the pool counts {inUseBefore - inUseAfter} bytes fewer in use, "
            + $"and {(LateDisposer.GotTheBlock ? "handed the innocent's block to the next renter" : "did not hand it out again yet")}");
        others.ForEach(static owner => owner.Dispose());
        innocent.Dispose();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint DropALateDisposer(TieredMemoryPool pool)
    {
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        writer.Write(new byte[100]);
        nint address = SegmentedBuffers.AddressOf(writer.GetReadOnlySequence().First);
        _ = new LateDisposer(writer);
        return address;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MakeWriterHolders(TieredMemoryPool pool) => MakeHolders(
        () => new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 }),
        static buffer => ((SegmentedBufferWriter)buffer).Write(new byte[10_000]));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MakeStreamHolders(TieredMemoryPool pool) => MakeHolders(
        () => new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 }),
        static buffer => ((SegmentedMemoryStream)buffer).Write(new byte[10_000]));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MakeHolders(Func<IDisposable> create, Action<IDisposable> fill)
    {
        for (int i = 0; i < Pairs; i++)
        {
            // Both orders of creation, so both orders of finalization are likely among the pairs.
            if (i % 2 == 0)
            {
                IDisposable buffer = create();
                fill(buffer);
                _ = new Holder { Buffer = buffer };
            }
            else
            {
                var holder = new Holder { Buffer = create() };
                fill(holder.Buffer);
            }
        }
    }

    /// <summary>
    /// Collects twice (the blocks of a dropped buffer suspect a leak, then are reclaimed into quarantine), waits out the
    /// quarantine, and rents until an innocent renter gets the block at <paramref name="address"/>, which it fills
    /// with 0xBB; returns it with the other rents made on the way.
    /// </summary>
    internal static (IMemoryOwner<byte> Innocent, System.Collections.Generic.List<IMemoryOwner<byte>> Others) ReclaimAndRentAgain(TieredMemoryPool pool, FakeTimeProvider time, nint address)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.True(pool.GetStatistics().LeaksReclaimed >= 1, "the buffer's block was not reclaimed as a leak");

        // Past the quarantine (a delay and a tick), and short of a whole delay after the block came back from it, when
        // the quiet class would be given back and the block's slab with it.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.5);
        IMemoryOwner<byte>? innocent = null;
        var others = new System.Collections.Generic.List<IMemoryOwner<byte>>();
        for (int i = 0; i < 256 && innocent is null; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(4096);
            if (SegmentedBuffers.AddressOf(owner.Memory) == address)
            {
                innocent = owner;
            }
            else
            {
                others.Add(owner);
            }
        }

        Assert.NotNull(innocent);
        innocent.Memory.Span.Fill(0xBB);
        return (innocent, others);
    }

    private static void Collect()
    {
        for (int i = 0; i < 4; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    /// <summary>Disposes what it holds from its finalizer (the classic pattern of a wrapper that owns a buffer).</summary>
    private sealed class Holder
    {
        public IDisposable? Buffer { get; set; }

        ~Holder() => Buffer?.Dispose();
    }
    /// <summary>A finalizer that puts itself back twice (a wrapper that waits for its own resources), then disposes the writer.</summary>
    private sealed class LateDisposer(SegmentedBufferWriter writer)
    {
        private int _runs;

        public static bool Disposed { get; private set; }

        public static TieredMemoryPool? Pool { get; set; }

        public static nint Target { get; set; }

        public static bool GotTheBlock { get; private set; }

        public static long RentedBytes { get; private set; }

        public static System.Collections.Generic.List<IMemoryOwner<byte>> Rented { get; } = [];

        ~LateDisposer()
        {
            if (++_runs < 3)
            {
                GC.ReRegisterForFinalize(this);
                return;
            }

            writer.Dispose();
            Disposed = true;
            for (int i = 0; i < 4 && Pool is not null; i++)
            {
                IMemoryOwner<byte> owner = Pool.Rent(4096);
                Rented.Add(owner);
                RentedBytes += owner.Memory.Length;
                GotTheBlock |= SegmentedBuffers.AddressOf(owner.Memory) == Target;
            }
        }
    }
}
