using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Probe of the refused renters' wait at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>: threads renting one class
/// until the cap is full, with another thread trimming and reading statistics, all fill the cap exactly (every block
/// the cap has room for is rented, none more), none is stuck, the statistics count what was rented, and all of it
/// comes back.
/// </summary>
public sealed class OneClassFillingTheCapSafetyTests
{
    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    public void RentersOfOneClassFillTheCapExactlyWhileAnotherThreadTrims(int renters)
    {
        const int size = 4096;
        const int slabBytes = 64 * 1024;
        const int slabs = 2;
        for (int round = 0; round < 20; round++)
        {
            var time = new FakeTimeProvider();
            var allocator = new LiveMappingsAllocator();
            TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, time);
            options.MaxBytesInUse = slabs * slabBytes;
            using var pool = new TieredMemoryPool(options);
            var held = new ConcurrentBag<IMemoryOwner<byte>>();
            using var start = new Barrier(renters + 1);
            using var done = new CancellationTokenSource();
            var threads = new List<Thread>();
            for (int t = 0; t < renters; t++)
            {
                threads.Add(new Thread(() =>
                {
                    start.SignalAndWait();
                    for (int i = 0; i < 2 * slabs * slabBytes / size; i++)
                    {
                        try
                        {
                            held.Add(pool.Rent(size));
                        }
                        catch (InsufficientMemoryException)
                        {
                            // The cap is full for now: the next try may find a block another renter's slab left.
                        }
                    }
                }));
            }

            var trimmer = new Thread(() =>
            {
                start.SignalAndWait();
                while (!done.IsCancellationRequested)
                {
                    pool.Trim();
                    Assert.Null(SafetyCases.NegativeFigures(pool.GetStatistics()));
                }
            });
            threads.ForEach(static thread => thread.Start());
            trimmer.Start();
            foreach (Thread thread in threads)
            {
                Assert.True(thread.Join(TimeSpan.FromSeconds(10)), $"round {round}: a renter of {size} B at a cap of {slabs} slabs still renting after 10 s\n{pool.GetStatistics()}");
            }

            done.Cancel();
            Assert.True(trimmer.Join(TimeSpan.FromSeconds(10)), $"round {round}: the trimming thread stuck");
            TieredMemoryPoolStatistics full = pool.GetStatistics();
            Assert.True(held.Count == slabs * slabBytes / size, $"round {round}: {held.Count} blocks of {size} B rented by {renters} threads at a cap of {slabs} slabs of {slabBytes} B, not {slabs * slabBytes / size}\n{full}");
            Assert.Equal(held.Count, full.Medium.Rents);
            SafetyCases.AssertDisjoint(held, $"round {round}");
            foreach (IMemoryOwner<byte> owner in held)
            {
                owner.Dispose();
            }

            SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
            TieredMemoryPoolStatistics idle = pool.GetStatistics();
            Assert.True(idle.BytesInUse == 0 && idle.Medium.Returns == held.Count, $"round {round}: after every block came back\n{idle}");
            allocator.AssertNoneLive($"round {round}: every block returned, three idle delays on");
        }
    }
}
