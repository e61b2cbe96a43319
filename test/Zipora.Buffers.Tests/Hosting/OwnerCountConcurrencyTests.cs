using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.AspNetCore.Connections;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The owner cap under concurrency: threads making views of new names at once and renting
/// through them, while the statistics are read. No snapshot ever holds more than 64 names and the overflow, and once
/// the threads are done the counts add up to every rent that succeeded.
/// </summary>
public sealed class OwnerCountConcurrencyTests
{
    [Fact]
    public void ViewsOfNewNamesMadeOnManyThreadsAtOnceStayCappedAndLoseNoRent()
    {
        const int Threads = 8;
        const int ViewsPerThread = 200;
        for (int round = 0; round < 10; round++)
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"owners-{Guid.NewGuid():N}" });
            var factory = new TieredMemoryPoolFactory(pool);
            long rents = 0;
            using var start = new Barrier(Threads + 1);
            List<Thread> workers = [.. Enumerable.Range(0, Threads).Select(thread => new Thread(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < ViewsPerThread; i++)
                {
                    using MemoryPool<byte> view = factory.Create(new MemoryPoolOptions { Owner = $"t{thread}-{i}" });
                    view.Rent(64).Dispose();
                    Interlocked.Increment(ref rents);
                }
            }))];
            workers.ForEach(static worker => worker.Start());
            start.SignalAndWait();
            while (workers.Exists(static worker => worker.IsAlive))
            {
                int names = pool.GetStatistics().RentsByOwner.Count;
                Assert.True(names <= OwnerCounters.MaxOwners + 1, $"{names} names in a snapshot");
            }

            workers.ForEach(static worker => worker.Join());
            IReadOnlyDictionary<string, long> byOwner = pool.GetStatistics().RentsByOwner;
            Assert.Equal(OwnerCounters.MaxOwners + 1, byOwner.Count);
            Assert.Equal(Threads * ViewsPerThread, rents);
            Assert.Equal(rents, byOwner.Values.Sum());
        }
    }
}
