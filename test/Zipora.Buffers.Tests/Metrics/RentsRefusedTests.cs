using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Every rent the pool refuses with <see cref="InsufficientMemoryException"/> is counted once, in
/// <see cref="TieredMemoryPoolStatistics.RentsRefused"/> and the meter's <c>zipora.buffers.rents.refused</c>: at
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> in every tier. Behind Kestrel a refusal surfaces only as a failed
/// connection, logged at one of four levels depending on where it struck, so an operator has no other sum of them. A
/// rent a slab tier serves from blocks freed meanwhile after its slab was refused is not one
/// (<see cref="CachedBlocksAtTheCapSafetyTests"/>).
/// </summary>
public sealed class RentsRefusedTests
{
    private const long Cap = 8L * 1024 * 1024;

    [Theory]
    [MemberData(nameof(SafetyCases.EveryTier), MemberType = typeof(SafetyCases))]
    public void EveryRentRefusedAtTheCapIsCountedOnceByTheStatisticsAndTheMeter(int size)
    {
        string name = $"refused-{Guid.NewGuid():N}";
        using var refusedMeter = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.rents.refused");
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name, MaxBytesInUse = Cap, TimeProvider = new FakeTimeProvider() });
        var held = new List<IMemoryOwner<byte>>();
        int refused = 0;
        long most = (2 * Cap / size) + 16;
        for (long rent = 0; rent < most && refused < 3; rent++)
        {
            try
            {
                held.Add(pool.Rent(size));
            }
            catch (InsufficientMemoryException)
            {
                refused++;
            }
        }

        Assert.True(refused == 3, $"{size} B: the cap refused {refused} of {most} rents\n{pool.GetStatistics()}");
        Assert.Equal(refused, pool.GetStatistics().RentsRefused);
        refusedMeter.RecordObservableInstruments();
        Assert.Equal(refused, refusedMeter.GetMeasurementSnapshot().Last(measurement => Equals(measurement.Tags[PoolMetrics.OwnerTag], name)).Value);

        // Room again: served rents add nothing.
        held.ForEach(static owner => owner.Dispose());
        pool.Rent(size).Dispose();
        Assert.Equal(refused, pool.GetStatistics().RentsRefused);
    }
    [Theory]
    [MemberData(nameof(SafetyCases.EveryTier), MemberType = typeof(SafetyCases))]
    public void EveryRentTheOsRefusesIsCountedOnceAndARentServedLaterIsNot(int size)
    {
        // The OS refuses every mapping, through the fallback too, until told otherwise.
        bool refusing = true;
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            PageAllocator = new ScriptedPageAllocator { RefuseMap = (_, _) => Volatile.Read(ref refusing) },
            FallbackPageAllocator = new ScriptedPageAllocator { RefuseMap = (_, _) => Volatile.Read(ref refusing) },
            TimeProvider = new FakeTimeProvider(),
        });
        using (pool)
        {
            for (int rent = 1; rent <= 3; rent++)
            {
                InsufficientMemoryException refused = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(size));
                Assert.Contains("The OS refused", refused.Message, StringComparison.Ordinal);
                Assert.Equal(rent, pool.GetStatistics().RentsRefused);
            }

            Volatile.Write(ref refusing, false);
            pool.Rent(size).Dispose();
            Assert.Equal(3, pool.GetStatistics().RentsRefused);
        }
    }
}
