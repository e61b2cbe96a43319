using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's trim drops the pages of every slab it lets go of (one madvise each, about 10 µs with its TLB
/// shootdowns). It did so under its heap's lock, which every statistics read and every rent that must carve a block of
/// any of the tier's classes takes: a trim of 100,000 cached 4 KB blocks (8,500 slabs) held them for 60 ms of its 78.
/// The drops now come after the lock: here one is held inside the allocator, and another thread's read and rent must
/// finish meanwhile, with the figures adding up.
/// </summary>
public sealed class TrimPageDropLockTests
{
    private const int CachedSize = 4096;
    private const int OtherClassSize = 8192;
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(3);

    [Fact]
    public void AStatisticsReadAndARentThatCarvesFinishWhileATrimDropsThePagesOfASlabItLetGoOf()
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        using var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
        IMemoryOwner<byte>[] owners = new IMemoryOwner<byte>[200];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(CachedSize);
            owners[i].Memory.Span.Fill(0xAB);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        // Returned just now: the trim lets go of their slabs, all free, and drops their pages (the unmap waits out the
        // delay). The first drop is held until the other thread is done, or has waited long enough to prove it waits.
        using var drop = new HeldPageDrop(allocator);

        var trimmer = new Thread(pool.Trim);
        trimmer.Start();
        Assert.True(drop.WaitUntilHeld(TimeSpan.FromSeconds(10)), "the trim dropped no page");

        TieredMemoryPoolStatistics? during = null;
        var other = new Thread(() =>
        {
            during = pool.GetStatistics();

            // A class never rented: its rent carves a block, under the heap's lock.
            pool.Rent(OtherClassSize).Dispose();
        });
        other.Start();
        bool finished = other.Join(s_patience);
        drop.LetGo();
        trimmer.Join();
        other.Join();

        Assert.True(finished, $"a statistics read and a rent of another class waited {s_patience.TotalSeconds} s for a trim held inside one slab's page drop: the trim drops pages under the heap's lock");
        Assert.Null(TrimStatisticsRaceTests.QuietTierThatDoesNotAddUp(during!));
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Null(TrimStatisticsRaceTests.QuietTierThatDoesNotAddUp(after));
        Assert.True(after.Medium.BytesEvicted >= owners.Length * (long)CachedSize, $"the trim's slabs are not counted as evicted once their pages were dropped\n{after}");
    }
}
