using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The large and huge tiers' statistics read while regions move between threads: their per-thread slots are summed
/// before the shared counts are read, so a rent served from a slot after the slots were read, whose buffer is returned
/// to the shared cache before the shared counts are, showed as a return without its rent: more returns than rents, a
/// negative <see cref="TierStatistics.BuffersInUse"/>.
/// </summary>
public sealed class BusyRegionStatisticsTests
{
    [Theory]
    [InlineData(100_000)]
    [InlineData(3 << 20)]
    public void RegionsRentedOnOneThreadAndReturnedOnAnotherNeverShowMoreReturnsThanRents(int size)
    {
        using var pool = new TieredMemoryPool();
        string? impossible = null;
        long reads = 0;
        using (var stop = new CancellationTokenSource())
        using (var handOff = new BlockingCollection<IMemoryOwner<byte>>(boundedCapacity: 4))
        {
            // Each thread also rents and returns one of its own, so its slot both serves rents and takes returns.
            var renter = new Thread(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    owner.Memory.Span[0] = 1;
                    if (!handOff.TryAdd(owner, millisecondsTimeout: 100))
                    {
                        owner.Dispose();
                    }

                    pool.Rent(size).Dispose();
                }

                handOff.CompleteAdding();
            });
            var returner = new Thread(() =>
            {
                foreach (IMemoryOwner<byte> owner in handOff.GetConsumingEnumerable())
                {
                    owner.Dispose();
                    pool.Rent(size).Dispose();
                }
            });
            renter.Start();
            returner.Start();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(2) && impossible is null)
            {
                reads++;
                impossible = ImpossibleFigures(pool.GetStatistics());
            }

            stop.Cancel();
            renter.Join();
            returner.Join();
        }

        Assert.True(impossible is null, $"while {size}-byte buffers moved between threads, read {reads} of the statistics showed {impossible}");

        // Quiet again: exact.
        TieredMemoryPoolStatistics quiet = pool.GetStatistics();
        Assert.Equal(0, quiet.BytesInUse);
        Assert.All([quiet.Large, quiet.Huge], tier => Assert.Equal(tier.Rents, tier.Returns));
        Assert.All([quiet.Large, quiet.Huge], tier => Assert.Equal(tier.Rents, tier.CacheHits + tier.CacheMisses));
    }

    private static string? ImpossibleFigures(TieredMemoryPoolStatistics statistics)
    {
        foreach (TierStatistics tier in (TierStatistics[])[statistics.Large, statistics.Huge])
        {
            if (tier.BuffersInUse < 0 || tier.CacheHits < 0 || tier.CacheHits + tier.CacheMisses != tier.Rents)
            {
                return $"{tier.Name}: {tier.Rents} rents, {tier.Returns} returns, {tier.CacheHits} hits, {tier.CacheMisses} misses";
            }
        }

        return SafetyCases.NegativeFigures(statistics);
    }
}
