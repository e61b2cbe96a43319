using System;
using System.Linq;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Metrics: the meter reports <c>zipora.buffers.leaks</c>, "buffers garbage collected without being disposed,
/// and reclaimed" (<c>LeaksReclaimed</c>), in every mode. <see cref="MetricsTests"/> checks the other instruments'
/// values; this one had no test at all: wired to diagnostic mode's <c>LeaksDetected</c> (0 outside diagnostic mode) it
/// passed every test, and a production dashboard would have shown no leak ever.
/// </summary>
/// <remarks>Forces full garbage collections to have the leak reclaimed, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class LeaksInstrumentTests
{
    private const int MaxCollections = 16;

    [Fact]
    public void ALeakReclaimedOutsideDiagnosticModeIsCountedByTheMeter()
    {
        string owner = $"leaks-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner, TimeProvider = new FakeTimeProvider() });
        using var leaks = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.leaks");
        RentAndDrop(pool);
        for (int i = 0; i < MaxCollections && pool.GetStatistics().LeaksReclaimed == 0; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);
        leaks.RecordObservableInstruments();
        long reported = leaks.GetMeasurementSnapshot().Last(measurement => Equals(measurement.Tags[PoolMetrics.OwnerTag], owner)).Value;
        Assert.Equal(1, reported);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentAndDrop(TieredMemoryPool pool) => pool.Rent(4096).Memory.Span.Fill(1);
}
