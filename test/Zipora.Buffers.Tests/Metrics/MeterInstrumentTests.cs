using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics.Metrics;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The README's "Metrics": the 20 instruments of the <c>Zipora.Buffers</c> meter, each of the kind and unit an
/// exporter reads (bytes as <c>By</c>; counters only grow, up/down counters and gauges move both ways), and the values
/// that no other test ties to their statistic.
/// </summary>
public sealed class MeterInstrumentTests
{
    private static readonly Dictionary<string, (Type Kind, string Unit)> s_documented = new()
    {
        ["zipora.buffers.rented"] = (typeof(ObservableCounter<>), "By"),
        ["zipora.buffers.allocated"] = (typeof(ObservableCounter<>), "By"),
        ["zipora.buffers.evicted"] = (typeof(ObservableCounter<>), "By"),
        ["zipora.buffers.pooled"] = (typeof(ObservableUpDownCounter<>), "By"),
        ["zipora.buffers.fragmented"] = (typeof(ObservableUpDownCounter<>), "By"),
        ["zipora.buffers.uncarved"] = (typeof(ObservableUpDownCounter<>), "By"),
        ["zipora.buffers.in_use"] = (typeof(ObservableUpDownCounter<>), "By"),
        ["zipora.buffers.cache.hits"] = (typeof(ObservableCounter<>), "{rent}"),
        ["zipora.buffers.cache.misses"] = (typeof(ObservableCounter<>), "{rent}"),
        ["zipora.buffers.hugepage.bytes"] = (typeof(ObservableUpDownCounter<>), "By"),
        ["zipora.buffers.leaks"] = (typeof(ObservableCounter<>), "{buffer}"),
        ["zipora.buffers.rents.refused"] = (typeof(ObservableCounter<>), "{rent}"),
        ["zipora.buffers.owner.rents"] = (typeof(ObservableCounter<>), "{rent}"),
        ["zipora.buffers.class.rents"] = (typeof(ObservableCounter<>), "{rent}"),
        ["zipora.buffers.class.high_water_mark"] = (typeof(ObservableGauge<>), "{buffer}"),
        ["zipora.buffers.segmented.live"] = (typeof(ObservableUpDownCounter<>), "{buffer}"),
        ["zipora.buffers.segmented.held"] = (typeof(ObservableUpDownCounter<>), "By"),
        ["zipora.buffers.segmented.messages"] = (typeof(ObservableCounter<>), "{message}"),
        ["zipora.buffers.segmented.segments"] = (typeof(ObservableCounter<>), "{segment}"),
        ["zipora.buffers.segmented.largest"] = (typeof(ObservableGauge<>), "By"),
        ["zipora.buffers.segmented.leaks"] = (typeof(ObservableCounter<>), "{buffer}"),
    };

    [Fact]
    public void EveryDocumentedInstrumentHasItsKindAndUnitAndThereAreNoOthers()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = $"instruments-{Guid.NewGuid():N}" });
        var published = new Dictionary<string, (Type Kind, string? Unit)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name == PoolMetrics.MeterName)
                {
                    lock (published)
                    {
                        published[instrument.Name] = (instrument.GetType().GetGenericTypeDefinition(), instrument.Unit);
                    }
                }
            },
        };
        listener.Start();

        Assert.Equal(s_documented.Keys.Order(StringComparer.Ordinal), published.Keys.Order(StringComparer.Ordinal));
        foreach ((string name, (Type kind, string unit)) in s_documented)
        {
            Assert.True(published[name] == (kind, unit), $"{name} is a {published[name].Kind.Name} in {published[name].Unit}, documented a {kind.Name} in {unit}");
        }
    }

    [Fact]
    public void FragmentedReportsEachTiersFragmentedBytesNotItsRetainedOnes()
    {
        string owner = $"fragmented-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner, IdleReleaseDelay = Timeout.InfiniteTimeSpan });

        // One 512 B block kept at the start of each of two slabs: the trim drops every page but those two, on which the
        // free rest of the page is fragmented (committed, beyond a trim's reach), and nothing is retained.
        List<IMemoryOwner<byte>> live = FragmentedLayout.Rent(pool, 512, 128, 2, out _);
        pool.Trim();
        TierStatistics small = pool.GetStatistics().Small;
        Assert.Equal(2 * FragmentedLayout.PinnedBesideEachLiveBlock(512), small.BytesFragmented);
        Assert.NotEqual(small.BytesRetained, small.BytesFragmented);

        using var fragmented = new MetricCollector<long>(null, PoolMetrics.MeterName, "zipora.buffers.fragmented");
        fragmented.RecordObservableInstruments();
        CollectedMeasurement<long> reported = Assert.Single(
            fragmented.GetMeasurementSnapshot(),
            m => Equals(m.Tags[PoolMetrics.OwnerTag], owner) && Equals(m.Tags[PoolMetrics.TierTag], "small"));
        Assert.Equal(small.BytesFragmented, reported.Value);
        live.ForEach(block => block.Dispose());
    }
}
