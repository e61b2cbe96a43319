using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region cached for reuse leaves resident memory within the idle delay: the tick before the one that unmaps it
/// (three quarters of a delay to a delay after its return) drops its pages, measured with <c>mincore</c> on the region
/// itself. The mapping stays for the whole delay, and what is rented again is never touched.
/// </summary>
public sealed class IdlePageDropTests
{
    private const int LargeSize = 100_000;
    private const int Regions = 6;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / 4;
    private static readonly TimeSpan s_moment = TimeSpan.FromMilliseconds(1);

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.9)]
    public void ACachedRegionsPagesLeaveResidentMemoryAtTheTickBeforeItsUnmapAndItStaysMappedUntilThen(double phaseOfAPeriod)
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore and mappings from /proc/self/maps (Linux)");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        time.Advance(s_period * phaseOfAPeriod);
        List<OwnerRange> ranges = RentFillAndReturn(pool, Regions);
        long retained = pool.GetStatistics().Large.BytesRetained;

        // The last region returned sits in the thread's slot; the others in the shared cache, which this is about.
        List<OwnerRange> cached = ranges[..^1];
        SafetyCases.Advance(time, (s_period * (4 - phaseOfAPeriod)) - s_moment);
        Assert.All(cached, range => Assert.True(ResidentPages(range) == Pages(range), $"{range} lost pages {(4 - phaseOfAPeriod) / 4:F3} delays after its return, a moment before the fourth tick"));

        SafetyCases.Advance(time, s_moment);
        Assert.All(cached, range =>
        {
            Assert.True(ResidentPages(range) == 0, $"{range}, cached since {(4 - phaseOfAPeriod) / 4:F3} delays, still has {ResidentPages(range)} of {Pages(range)} pages resident at the tick before its unmap");
            Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range} was unmapped before its delay");
        });
        Assert.Equal(retained, pool.GetStatistics().Large.BytesRetained);

        // Unmapped at the next tick (read from the pool: other tests may map the same addresses once they are free).
        SafetyCases.Advance(time, s_period);
        AssertNothingLeftMapped(pool, "a period after the regions' pages were dropped");
    }

    [Fact]
    public void ARegionRentedAgainAfterItsPagesWereDroppedKeepsWhatItsNewOwnerWritesThroughLaterTicks()
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore and mappings from /proc/self/maps (Linux)");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        List<OwnerRange> first = RentFillAndReturn(pool, Regions);
        SafetyCases.Advance(time, s_delay);
        Assert.Equal(0, ResidentPages(first[0]));

        // Rented again: every region of the first round comes back (the slot's, then the cache's newest first).
        var owners = Enumerable.Range(0, Regions).Select(_ => pool.Rent(LargeSize)).ToList();
        Assert.Equal(first.Select(range => range.Start).Order(), owners.Select(owner => SafetyCases.RangeOf(owner).Start).Order());
        for (int i = 0; i < owners.Count; i++)
        {
            owners[i].Memory.Span.Fill((byte)(0x40 + i));
        }

        // Held through two delays of ticks: no later drop touches them.
        SafetyCases.Advance(time, 2 * s_delay);
        for (int i = 0; i < owners.Count; i++)
        {
            int differs = owners[i].Memory.Span.IndexOfAnyExcept((byte)(0x40 + i));
            Assert.True(differs < 0, $"owner {i} {SafetyCases.RangeOf(owners[i])} lost what it wrote at byte {differs} while it held the region through later ticks");
        }

        owners.ForEach(owner => owner.Dispose());
        SafetyCases.Advance(time, s_delay + s_period);
        AssertNothingLeftMapped(pool, "a delay and a period after the regions' second return");
    }

    [Fact]
    public void RentsRacingTheTicksThatDropCachedPagesNeverLoseWhatTheyWrote()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        string? lost = null;
        long rounds = 0;
        var renter = new Thread(() =>
        {
            byte stamp = 0;
            while (!stop.IsCancellationRequested && lost is null)
            {
                // Three at once: past the thread's slot, into the shared cache the ticks drop pages in.
                var owners = new List<IMemoryOwner<byte>>();
                for (int i = 0; i < 3; i++)
                {
                    IMemoryOwner<byte> owner = pool.Rent(LargeSize);
                    stamp = (byte)((stamp % 255) + 1);
                    owner.Memory.Span.Fill(stamp);
                    owners.Add(owner);
                }

                Thread.SpinWait(2_000);
                foreach (IMemoryOwner<byte> owner in owners)
                {
                    byte expected = owner.Memory.Span[0];
                    int differs = owner.Memory.Span.IndexOfAnyExcept(expected);
                    if (differs >= 0 || expected == 0)
                    {
                        lost = $"a rented region {SafetyCases.RangeOf(owner)} lost what its owner wrote (byte {differs}; first byte {expected}) while ticks dropped cached pages";
                    }

                    owner.Dispose();
                }

                Interlocked.Increment(ref rounds);
            }
        });
        renter.Start();

        // Regions returned and left to idle, so every few ticks some of them are due to have their pages dropped.
        while (!stop.IsCancellationRequested && lost is null)
        {
            using (var batch = new OwnerBatch(pool, 8))
            {
            }

            time.Advance(s_period);
            if (Interlocked.Read(ref rounds) % 7 == 0)
            {
                pool.Trim();
            }
        }

        renter.Join();
        Assert.True(lost is null, lost);
        Assert.True(rounds > 100, $"only {rounds} rounds of rents ran");
        Assert.Null(SafetyCases.NegativeFigures(pool.GetStatistics()));
    }

    private static List<OwnerRange> RentFillAndReturn(TieredMemoryPool pool, int count)
    {
        var owners = Enumerable.Range(0, count).Select(_ => pool.Rent(LargeSize)).ToList();
        owners.ForEach(owner => owner.Memory.Span.Fill(0xAB));
        List<OwnerRange> ranges = owners.Select(SafetyCases.RangeOf).ToList();
        owners.ForEach(owner => owner.Dispose());
        return ranges;
    }

    private static void AssertNothingLeftMapped(TieredMemoryPool pool, string when)
    {
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.Large.BytesRetained == 0 && statistics.BytesAwaitingRelease == 0 && statistics.MunmapCalls == statistics.MmapCalls,
            $"{when} the pool still holds mappings: {statistics.Large.BytesRetained} bytes retained, {statistics.BytesAwaitingRelease} awaiting release, {statistics.MunmapCalls} of {statistics.MmapCalls} mappings unmapped");
    }

    private static int ResidentPages(OwnerRange range) => ProcessMappings.ResidentPages(range.Start, range.Length);

    private static int Pages(OwnerRange range) => (range.Length + Environment.SystemPageSize - 1) / Environment.SystemPageSize;

    /// <summary>Rents <c>count</c> large buffers, touches them, and returns them all on dispose.</summary>
    private sealed class OwnerBatch : IDisposable
    {
        private readonly List<IMemoryOwner<byte>> _owners = [];

        public OwnerBatch(TieredMemoryPool pool, int count)
        {
            for (int i = 0; i < count; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(LargeSize);
                owner.Memory.Span[0] = 1;
                _owners.Add(owner);
            }
        }

        public void Dispose() => _owners.ForEach(owner => owner.Dispose());
    }
}
