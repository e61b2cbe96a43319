using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.AspNetCore.Connections;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pools <see cref="TieredMemoryPoolFactory"/> creates (Kestrel's) are views of one shared pool: a disposed view
/// rents nothing, and an owner it rented before can still be returned afterwards, to the shared pool.
/// </summary>
public sealed class FactoryViewSafetyTests
{
    [Fact]
    public void RentingFromADisposedViewThrowsObjectDisposed()
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default);
        MemoryPool<byte> view = new TieredMemoryPoolFactory(pool).Create(new MemoryPoolOptions { Owner = "kestrel" });
        view.Rent(4096).Dispose();
        view.Dispose();

        Assert.Throws<ObjectDisposedException>(() => view.Rent(4096));
        Assert.Throws<ObjectDisposedException>(() => view.Rent());
        using IMemoryOwner<byte> stillServed = pool.Rent(4096);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInEveryMode), MemberType = typeof(SafetyCases))]
    public void AnOwnerRentedBeforeTheViewWasDisposedCanStillBeReturned(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        MemoryPool<byte> view = new TieredMemoryPoolFactory(pool).Create(new MemoryPoolOptions { Owner = "kestrel" });
        IMemoryOwner<byte> owner = view.Rent(size);
        owner.Memory.Span.Fill(7);
        long returnsBefore = Returns(pool.GetStatistics());
        view.Dispose();

        Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)7) < 0, "a view's dispose touched a buffer still rented through it");
        owner.Dispose();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(returnsBefore + 1, Returns(statistics));
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(1, statistics.RentsByOwner["kestrel"]);
    }

    /// <summary>
    /// Three threads rent through a view of every tier while the view and its pool are disposed, in both orders: no
    /// rent begun after either dispose succeeds, every rent that did is counted for the owner, and all come back.
    /// </summary>
    [Fact]
    public void RentsRacingTheViewsAndThePoolsDisposeNeverSucceedAfterItAndAreAllCountedAndReturned()
    {
        int succeededAfterDispose = 0;
        long succeeded = 0;
        long counted = 0;
        int[] sizes = [100, 4096, 100_000, 3_000_000];
        for (int round = 0; round < 200; round++)
        {
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan, EnableHugepages = false });
            MemoryPool<byte> view = new TieredMemoryPoolFactory(pool).Create(new MemoryPoolOptions { Owner = "racing" });
            int disposed = 0;
            var owners = new ConcurrentQueue<IMemoryOwner<byte>>();
            var threads = new List<Thread>();
            for (int t = 0; t < 3; t++)
            {
                int size = sizes[(round + t) % sizes.Length];
                threads.Add(new Thread(() =>
                {
                    while (true)
                    {
                        bool afterDispose = Volatile.Read(ref disposed) != 0;
                        try
                        {
                            owners.Enqueue(view.Rent(size));
                        }
                        catch (ObjectDisposedException)
                        {
                            return;
                        }

                        Interlocked.Increment(ref succeeded);
                        if (afterDispose)
                        {
                            Interlocked.Increment(ref succeededAfterDispose);
                        }
                    }
                }));
            }

            threads.ForEach(static t => t.Start());
            Thread.SpinWait(2000 * (round % 7));
            if (round % 2 == 0)
            {
                pool.Dispose();
                Volatile.Write(ref disposed, 1);
                view.Dispose();
            }
            else
            {
                view.Dispose();
                Volatile.Write(ref disposed, 1);
                pool.Dispose();
            }

            threads.ForEach(static t => t.Join());
            counted += pool.GetStatistics().RentsByOwner.GetValueOrDefault("racing");
            while (owners.TryDequeue(out IMemoryOwner<byte>? owner))
            {
                owner.Dispose();
            }

            Assert.Equal(0, pool.GetStatistics().BytesInUse);
        }

        Assert.Equal(0, succeededAfterDispose);
        Assert.Equal(succeeded, counted);
    }

    private static long Returns(TieredMemoryPoolStatistics statistics) =>
        statistics.Small.Returns + statistics.Medium.Returns + statistics.Large.Returns + statistics.Huge.Returns;
}
