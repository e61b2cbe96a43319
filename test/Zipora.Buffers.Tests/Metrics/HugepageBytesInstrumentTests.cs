using System;
using System.Buffers;
using System.Linq;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Metrics: the meter reports <c>zipora.buffers.hugepage.bytes</c>, the statistics' <c>HugepageBytes</c>. No
/// test read the instrument: reporting 0 passed every test.
/// </summary>
/// <remarks>
/// Where the machine gives a huge buffer no hugepage at all (transparent hugepages off, none reserved), both figures
/// are 0 and the test proves only that they agree.
/// </remarks>
public sealed class HugepageBytesInstrumentTests
{
    [Fact]
    public void TheInstrumentIsTheStatistic()
    {
        string owner = $"hugepages-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner, TimeProvider = new FakeTimeProvider() });
        using var hugepages = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.hugepage.bytes");
        using IMemoryOwner<byte> huge = pool.Rent(4 * 1024 * 1024);
        huge.Memory.Span.Fill(1);

        hugepages.RecordObservableInstruments();
        long reported = hugepages.GetMeasurementSnapshot().Last(measurement => Equals(measurement.Tags[PoolMetrics.OwnerTag], owner)).Value;
        Assert.Equal(pool.GetStatistics().HugepageBytes, reported);
    }
}
