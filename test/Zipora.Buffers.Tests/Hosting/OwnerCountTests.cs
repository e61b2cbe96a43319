using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The factory's views count their rents by owner name, for the statistics and the meter: a caller that names a view
/// per connection or per request must not grow the pool (or the meter's series) by one counter per name for good.
/// </summary>
public sealed class OwnerCountTests
{
    private const int NamesMade = 10_000;

    [Fact]
    public void ViewsOfManyOwnerNamesAreCountedUnderSixtyFourNamesAndTheOthersAndNoRentIsLost()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"owners-{Guid.NewGuid():N}" });
        var factory = new TieredMemoryPoolFactory(pool);
        for (int i = 0; i < NamesMade; i++)
        {
            using MemoryPool<byte> view = factory.Create(new MemoryPoolOptions { Owner = $"connection-{i}" });
            view.Rent(100).Dispose();
            if (i < 3)
            {
                view.Rent(100).Dispose();
            }
        }

        IReadOnlyDictionary<string, long> byOwner = pool.GetStatistics().RentsByOwner;
        Assert.Equal(OwnerCounters.MaxOwners + 1, byOwner.Count);
        Assert.Equal(2, byOwner["connection-0"]);
        Assert.Equal(1, byOwner[$"connection-{OwnerCounters.MaxOwners - 1}"]);
        Assert.False(byOwner.ContainsKey($"connection-{OwnerCounters.MaxOwners}"));
        Assert.Equal(NamesMade - OwnerCounters.MaxOwners, byOwner[OwnerCounters.OtherOwners]);
        Assert.Equal(NamesMade + 3, byOwner.Values.Sum());
    }

    /// <summary>
    /// Measured from outside the pool: a million views of distinct names, made and disposed without a rent (before
    /// the cap: 132 MB kept reachable for the pool's life), leave the managed heap within a few megabytes. Alone in a
    /// process, so no other test's garbage moves the figure.
    /// </summary>
    [Fact]
    public void AMillionViewsOfDistinctNamesKeepNoMoreThanAFewMegabytesReachable()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(OwnerCountTests), nameof(AMillionViewsOfDistinctNamesKeepNoMoreThanAFewMegabytesReachable)))
        {
            return;
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });
        var factory = new TieredMemoryPoolFactory(pool);
        factory.Create(new MemoryPoolOptions { Owner = "warm-up" }).Dispose();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        for (int i = 0; i < 1_000_000; i++)
        {
            factory.Create(new MemoryPoolOptions { Owner = $"request-{i}" }).Dispose();
        }

        long kept = GC.GetTotalMemory(forceFullCollection: true) - before;
        GC.KeepAlive(pool);
        Assert.True(kept < 4L << 20, $"a million views of distinct names, disposed, keep {kept:N0} bytes reachable");
    }

    [Fact]
    public void AnOwnerCountedApartKeepsItsOwnCountAfterTheCapIsReached()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"owners-{Guid.NewGuid():N}" });
        var factory = new TieredMemoryPoolFactory(pool);
        MemoryPool<byte> kestrel = factory.Create(new MemoryPoolOptions { Owner = "kestrel" });
        for (int i = 0; i < OwnerCounters.MaxOwners * 2; i++)
        {
            factory.Create(new MemoryPoolOptions { Owner = $"request-{i}" }).Rent(100).Dispose();
        }

        factory.Create(new MemoryPoolOptions { Owner = "kestrel" }).Rent(100).Dispose();
        kestrel.Rent(100).Dispose();

        Assert.Equal(2, pool.GetStatistics().RentsByOwner["kestrel"]);
    }

    [Fact]
    public void TheMetersOwnerSeriesStayBoundedWhateverTheNumberOfOwnerNames()
    {
        string name = $"owners-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name });
        using var rents = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.owner.rents");
        var factory = new TieredMemoryPoolFactory(pool);
        for (int i = 0; i < NamesMade; i++)
        {
            factory.Create(new MemoryPoolOptions { Owner = $"request-{i}" }).Rent(100).Dispose();
        }

        rents.RecordObservableInstruments();
        List<CollectedMeasurement<long>> ours = [.. rents.GetMeasurementSnapshot().Where(m => Equals(m.Tags[PoolMetrics.PoolTag], name))];
        Assert.Equal(OwnerCounters.MaxOwners + 1, ours.Count);
        Assert.Equal(NamesMade, ours.Sum(static m => m.Value));
    }

    [Fact]
    public void AnOwnerNamedLikeTheOthersSharesTheirCountAndNothingIsLost()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"owners-{Guid.NewGuid():N}" });
        var factory = new TieredMemoryPoolFactory(pool);
        factory.Create(new MemoryPoolOptions { Owner = OwnerCounters.OtherOwners }).Rent(100).Dispose();
        for (int i = 0; i < OwnerCounters.MaxOwners + 5; i++)
        {
            factory.Create(new MemoryPoolOptions { Owner = $"request-{i}" }).Rent(100).Dispose();
        }

        IReadOnlyDictionary<string, long> byOwner = pool.GetStatistics().RentsByOwner;
        // The named owner took one of the 64 places, so 63 of the request names are counted apart and 6 go past the cap.
        Assert.Equal(OwnerCounters.MaxOwners + 6, byOwner.Values.Sum());
        Assert.Equal(1 + 6, byOwner[OwnerCounters.OtherOwners]);
        Assert.Equal(OwnerCounters.MaxOwners, byOwner.Count);
    }

    [Fact]
    public void TheFirstSixtyFourOwnerNamesAreCountedApartAndLaterOnesUnderOtherOwners()
    {
        // The README's figures, written out: a change of the cap or of the overflow's name is a change of what
        // dashboards and alerts built on the owner tag see.
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"owners-{Guid.NewGuid():N}" });
        var factory = new TieredMemoryPoolFactory(pool);
        for (int i = 0; i < 66; i++)
        {
            factory.Create(new MemoryPoolOptions { Owner = $"listener-{i}" }).Rent(100).Dispose();
        }

        IReadOnlyDictionary<string, long> byOwner = pool.GetStatistics().RentsByOwner;
        Assert.Equal(1, byOwner["listener-63"]);
        Assert.False(byOwner.ContainsKey("listener-64"));
        Assert.Equal(2, byOwner["(other owners)"]);
        Assert.Equal(65, byOwner.Count);
    }
}
