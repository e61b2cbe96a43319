using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

public sealed class TrimTests
{
    private static readonly int[] s_sizesAcrossTiers = [24, 700, 1024, 4096, 16384, 50_000, 1_000_000, 6_000_000];

    [Fact]
    public void TrimGivesEveryIdleByteBackAndLeavesLiveBuffersAlone()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var live = new List<IMemoryOwner<byte>>();
        var idle = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizesAcrossTiers)
        {
            for (int i = 0; i < 40; i++)
            {
                idle.Add(pool.Rent(size));
            }

            IMemoryOwner<byte> kept = pool.Rent(size);
            kept.Memory.Span.Fill(0x3C);
            live.Add(kept);
        }

        idle.ForEach(owner => owner.Dispose());
        pool.Trim();

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Large.BytesRetained);
        Assert.Equal(0, statistics.Huge.BytesRetained);

        // Slab tiers keep only the slabs that hold a live block: one per class in use here.
        Assert.InRange(statistics.Small.BytesRetained, 0, 2 * 64 * 1024);
        Assert.InRange(statistics.Medium.BytesRetained, 0, (64 * 1024) + (64 * 1024) + (256 * 1024));
        foreach (IMemoryOwner<byte> owner in live)
        {
            Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)0x3C) < 0);
            owner.Dispose();
        }

        pool.Trim();
        statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesRetained);
        Assert.Equal(0, statistics.BytesInUse);
    }

    [Fact]
    public void ThePoolKeepsWorkingAfterATrim()
    {
        using var pool = new TieredMemoryPool();
        foreach (int size in s_sizesAcrossTiers)
        {
            pool.Rent(size).Dispose();
        }

        pool.Trim();
        foreach (int size in s_sizesAcrossTiers)
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(1);
            Assert.Equal(1, owner.Memory.Span[^1]);
        }
    }

    [Fact]
    public void AStaleMemoryOfATrimmedBufferThrowsInsteadOfTouchingUnmappedPages()
    {
        using var pool = new TieredMemoryPool();
        IMemoryOwner<byte> owner = pool.Rent(100_000);
        Memory<byte> stale = owner.Memory;
        owner.Dispose();
        pool.Trim();
        Assert.Throws<ObjectDisposedException>(() => stale.Span[0]);
    }

    [Fact]
    public async Task TrimmingWhileOtherThreadsRentAndReturnLosesAndCorruptsNothing()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        using var stop = new CancellationTokenSource();
        Task trimmer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Trim();
                await Task.Yield();
            }
        });

        Parallel.For(0, 4, worker =>
        {
            var random = new Random(worker);
            var held = new Queue<(IMemoryOwner<byte> Owner, byte Stamp)>();
            for (int i = 0; i < 20_000; i++)
            {
                int size = s_sizesAcrossTiers[random.Next(s_sizesAcrossTiers.Length - 1)];
                IMemoryOwner<byte> owner = pool.Rent(size);
                byte stamp = (byte)random.Next(1, 256);
                owner.Memory.Span.Fill(stamp);
                held.Enqueue((owner, stamp));
                if (held.Count > 8)
                {
                    (IMemoryOwner<byte> oldest, byte expected) = held.Dequeue();
                    Assert.True(oldest.Memory.Span.IndexOfAnyExcept(expected) < 0, "a live buffer changed under a trim");
                    oldest.Dispose();
                }
            }

            while (held.TryDequeue(out (IMemoryOwner<byte> Owner, byte Stamp) entry))
            {
                entry.Owner.Dispose();
            }
        });

        await stop.CancelAsync();
        await trimmer;
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.BytesRetained);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);
    }

    [Theory]
    [InlineData(false, Native.PageAdvice.DontNeed)]
    [InlineData(true, Native.PageAdvice.Free)]
    public void IdlePagesOfPartlyUsedSlabsAreDroppedWithTheChosenAdvice(bool lazyFree, Native.PageAdvice expected)
    {
        var allocator = new ScriptedPageAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, UseLazyFree = lazyFree, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 8; i++)
        {
            owners.Add(pool.Rent(16384));
        }

        // One block stays rented, so its slab stays mapped and the seven free blocks after it are dropped: one run of
        // pages, so one call.
        owners.Skip(1).ToList().ForEach(owner => owner.Dispose());
        pool.Trim();

        Assert.Equal(1, allocator.Advice.Count(advice => advice == expected));
        Assert.Equal(7 * 16384, pool.GetStatistics().Medium.BytesEvicted);
        Assert.DoesNotContain(allocator.Advice, advice => advice != expected && advice != Native.PageAdvice.HugePage);
        owners[0].Dispose();
    }
}
