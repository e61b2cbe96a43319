using System;
using System.Buffers;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab trim gives back the slabs it let go of after the heap's lock, still listed in the heap: a disposal meanwhile
/// would count their blocks as rented (none ever comes back), and never free them. The tier's trim lock keeps the
/// disposal out until the give-back is done: here one page drop is held, and a dispose from another thread must wait
/// for it, then leave nothing mapped once the delay is over, with a buffer rented throughout intact.
/// </summary>
public sealed class DisposeDuringTrimGiveBackTests
{
    private const int CachedSize = 4096;
    private const int Cached = 300;
    private static readonly TimeSpan s_waitedLongEnough = TimeSpan.FromMilliseconds(300);

    [Fact]
    public void ADisposeFromAnotherThreadWaitsForATrimGivingBackItsSlabsAndLeavesNothingMapped()
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));

        // The rented buffer first, alone in its slab: the cached blocks fill slabs of their own, all free at the trim,
        // so the first page dropped is a give-back's.
        IMemoryOwner<byte> rented = pool.Rent(CachedSize * 2);
        rented.Memory.Span.Fill(0x5A);
        IMemoryOwner<byte>[] cached = [.. Enumerable.Range(0, Cached).Select(_ => pool.Rent(CachedSize))];
        Array.ForEach(cached, owner => owner.Dispose());

        using var drop = new HeldPageDrop(allocator);

        var trimmer = new Thread(pool.Trim);
        trimmer.Start();
        var disposer = new Thread(pool.Dispose);
        bool disposedMeanwhile;
        try
        {
            Assert.True(drop.WaitUntilHeld(TimeSpan.FromSeconds(10)), "the trim dropped no page");
            disposer.Start();
            disposedMeanwhile = disposer.Join(s_waitedLongEnough);
        }
        finally
        {
            drop.LetGo();
            trimmer.Join();
        }

        disposer.Join();
        Assert.False(disposedMeanwhile, "the pool's dispose ran while a trim was giving back the slabs it let go of");
        Assert.True(rented.Memory.Span.IndexOfAnyExcept((byte)0x5A) < 0, "the buffer rented throughout lost its bytes");
        rented.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive("three delays after the pool's dispose");
    }
}
