using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region returned to the shared cache, and a mapping set aside to be unmapped, carry the time of their return: the
/// pool asks its ticker for a tick when the delay is over, so they leave the process one delay after their return
/// (within an eighth of a tick, the ticker's grid), not at the first regular tick after it (up to a tick later), and
/// never a moment before. Read from /proc/self/maps, in a process of its own (a test on another thread could be given
/// an address just unmapped).
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class TimestampedReleaseTests
{
    private const int LargeSize = 100_000;
    private const int HugeSize = 3_000_000;
    private const int PerSize = 4;

    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / IdleClock.TicksPerDelay;

    // The ticker puts its firings on a grid of an eighth of a period; a millisecond on top for the rounding.
    private static readonly TimeSpan s_lateness = (s_period / 8) + TimeSpan.FromMilliseconds(1);

    [Fact]
    public void CachedRegionsLeaveOneDelayAfterTheirReturnWhereverItFellInATick()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(CachedRegionsLeaveOneDelayAfterTheirReturnWhereverItFellInATick)))
        {
            return;
        }

        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        foreach (double phaseOfAPeriod in new[] { 0.1, 0.5, 0.9 })
        {
            var time = new FakeTimeProvider();
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
            SafetyCases.Advance(time, s_period * phaseOfAPeriod);

            // Of each size, the last one returned parks in this thread's slot; the others go to the shared cache.
            List<OwnerRange> ranges = RentTouchAndReturn(pool);
            List<OwnerRange> cached = Cached(ranges);
            long munmapsBefore = pool.GetStatistics().MunmapCalls;

            SafetyCases.Advance(time, SafetyCases.IdleDelay - TimeSpan.FromMilliseconds(1));
            Assert.Equal(0, CountUnmapped(ranges));
            Assert.Equal(munmapsBefore, pool.GetStatistics().MunmapCalls);

            SafetyCases.Advance(time, s_lateness);
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            string at = $"phase {phaseOfAPeriod}, a delay and {s_lateness.TotalMilliseconds} ms after the return";
            Assert.True(CountUnmapped(cached) == cached.Count, $"{at}: {CountUnmapped(cached)} of the {cached.Count} cached regions unmapped; {statistics}");
            Assert.True(statistics.MunmapCalls >= munmapsBefore + cached.Count, $"{at}: {statistics.MunmapCalls - munmapsBefore} munmap calls");
            Assert.Equal(0, statistics.BytesAwaitingRelease);

            // The parked ones go by the slot's tick stamp, at the first tick after the delay (so this one already when
            // the return came late in its tick), as before.
            SafetyCases.Advance(time, s_period);
            Assert.Equal(ranges.Count, CountUnmapped(ranges));
        }
    }

    [Fact]
    public void AMappingTrimmedBeforeItsDelayIsUnmappedOneDelayAfterItsReturn()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(AMappingTrimmedBeforeItsDelayIsUnmappedOneDelayAfterItsReturn)))
        {
            return;
        }

        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        SafetyCases.Advance(time, s_period * 0.3);
        List<OwnerRange> ranges = RentTouchAndReturn(pool);

        // A trim half a delay later drops the pages of every returned region at once; a stale Span may still write
        // there, so the mappings stay until the delay since each return is over.
        SafetyCases.Advance(time, SafetyCases.IdleDelay / 2);
        pool.Trim();
        Assert.Equal(0, CountUnmapped(ranges));
        Assert.True(pool.GetStatistics().BytesAwaitingRelease > 0);

        SafetyCases.Advance(time, (SafetyCases.IdleDelay / 2) - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, CountUnmapped(ranges));

        // The regions from the shared cache were stamped at their return; those from the slots only by the slot's tick,
        // so theirs waits from the latest moment that tick allows (the start of the epoch after it) and goes later.
        SafetyCases.Advance(time, s_lateness);
        Assert.Equal(Cached(ranges).Count, CountUnmapped(ranges));
        Assert.Equal(Cached(ranges).Count, CountUnmapped(Cached(ranges)));

        SafetyCases.Advance(time, SafetyCases.IdleDelay / 2);
        Assert.Equal(ranges.Count, CountUnmapped(ranges));
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
    }

    private static List<OwnerRange> RentTouchAndReturn(TieredMemoryPool pool)
    {
        var owners = new List<IMemoryOwner<byte>>();
        foreach (int size in new[] { LargeSize, HugeSize })
        {
            for (int i = 0; i < PerSize; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span.Fill(1);
                owners.Add(owner);
            }
        }

        List<OwnerRange> ranges = owners.ConvertAll(SafetyCases.RangeOf);
        owners.ForEach(static owner => owner.Dispose());
        return ranges;
    }

    /// <summary>The ranges that went to the shared cache: all but the last returned of each size, which parks in the slot.</summary>
    private static List<OwnerRange> Cached(List<OwnerRange> ranges) =>
        ranges.FindAll(range => ranges.IndexOf(range) % PerSize != PerSize - 1);

    private static int CountUnmapped(List<OwnerRange> ranges) =>
        ranges.FindAll(static range => !ProcessMappings.IsMappedNow(range.Start, range.Length)).Count;
}
