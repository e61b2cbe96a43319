using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Attacks on the idle release of regions on the real clock: delays of a few milliseconds under cross-thread traffic
/// with trims racing the ticks (an unmapped range is caught by msync before the delay since a moment before its return
/// is over, which can only mean it went too early), and regions coming due every millisecond (the ticker must still
/// fire at most eight times per period).
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class RealClockRegionReleaseSafetyTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(200)]
    public void TinyRealTimeDelaysUnderCrossThreadTrafficNeverUnmapEarlyNorStormTheTicker(int delayMs)
    {
        TimeSpan delay = TimeSpan.FromMilliseconds(delayMs);
        var time = new CountingSystemTime();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = delay, RegionCacheMaxCount = 4, HugeRegionCacheMaxCount = 2 });
        long delayStamps = (long)(delay.TotalSeconds * Stopwatch.Frequency);
        var handed = new BlockingCollection<IMemoryOwner<byte>>(8);
        var recent = new ConcurrentQueue<(OwnerRange Range, long ReturnedBefore)>();
        var failures = new ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(1_500));
        int[] sizes = [20_000, 100_000, 300_000, 3_000_000];
        long start = Stopwatch.GetTimestamp();
        long checks = 0;
        long returned = 0;

        var renter = new Thread(() =>
        {
            var random = new Random(7);
            while (!stop.IsCancellationRequested)
            {
                IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
                owner.Memory.Span[^1] = 1;
                if (!handed.TryAdd(owner, 50))
                {
                    owner.Dispose();
                }
            }

            handed.CompleteAdding();
        });
        var returner = new Thread(() =>
        {
            foreach (IMemoryOwner<byte> owner in handed.GetConsumingEnumerable())
            {
                OwnerRange range = SafetyCases.RangeOf(owner);
                long before = Stopwatch.GetTimestamp();
                owner.Dispose();
                recent.Enqueue((range, before));
                Interlocked.Increment(ref returned);
            }
        });
        var checker = new Thread(() =>
        {
            while (!stop.IsCancellationRequested || !recent.IsEmpty)
            {
                if (!recent.TryDequeue(out (OwnerRange Range, long ReturnedBefore) item))
                {
                    Thread.Yield();
                    continue;
                }

                // Mapped is checked first, the time after: an unmapped range seen before the delay since a moment
                // before its return was over was unmapped too early.
                bool mapped = ProcessMappings.IsMappedNow(item.Range.Start, item.Range.Length);
                long seenAt = Stopwatch.GetTimestamp();
                if (!mapped && seenAt - item.ReturnedBefore < delayStamps)
                {
                    failures.Enqueue($"{item.Range} unmapped {Stopwatch.GetElapsedTime(item.ReturnedBefore, seenAt).TotalMilliseconds} ms after its return (delay {delayMs} ms)");
                }
                else if (mapped && seenAt - item.ReturnedBefore < delayStamps && recent.Count < 4_096)
                {
                    // Looked at again until its delay is over.
                    recent.Enqueue(item);
                    Interlocked.Increment(ref checks);
                }
            }
        });
        var trimmer = new Thread(() =>
        {
            // Trims race the returns and the ticks.
            while (!stop.IsCancellationRequested)
            {
                Thread.Sleep(3);
                pool.Trim();
            }
        });
        Array.ForEach(new[] { renter, returner, checker, trimmer }, static thread => thread.Start());
        Array.ForEach(new[] { renter, returner, checker, trimmer }, static thread => thread.Join());
        TimeSpan ran = Stopwatch.GetElapsedTime(start);
        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        Assert.True(Interlocked.Read(ref checks) + returned > 1_000, $"only {returned} returns and {checks} checks again");

        // At most eight firings per period (a firing may come a millisecond early and find nothing due: doubled).
        TimeSpan period = TimeSpan.FromTicks(Math.Max(delay.Ticks / IdleClock.TicksPerDelay, TimeSpan.FromMilliseconds(10).Ticks));
        double bound = (ran / period * 8 * 2) + 10;
        Assert.True(time.Firings <= bound, $"{time.Firings} firings in {ran.TotalMilliseconds} ms with a period of {period.TotalMilliseconds} ms (bound {bound})");
        string? negative = SafetyCases.NegativeFigures(pool.GetStatistics());
        Assert.True(negative is null, $"after the traffic: {negative}");
    }

    [Fact]
    public void RegionsComingDueEveryMillisecondGetAtMostEightTicksPerPeriod()
    {
        // Held, then returned one a millisecond from another thread into the shared cache, where nobody rents them:
        // from a delay on, one comes due every millisecond, and no tick may be added for each.
        TimeSpan delay = TimeSpan.FromMilliseconds(400);
        var time = new CountingSystemTime();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = delay, RegionCacheMaxCount = 2_000, RegionCacheMaxBytes = 256L * 1024 * 1024 });
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 700; i++)
        {
            owners.Add(pool.Rent(20_000));
        }

        long start = Stopwatch.GetTimestamp();
        int firingsAtStart = time.Firings;
        var returner = new Thread(() =>
        {
            foreach (IMemoryOwner<byte> owner in owners)
            {
                owner.Dispose();
                Thread.Sleep(1);
            }
        });
        returner.Start();
        returner.Join();
        // Waited for, not slept out: the last comes due a delay after its return and goes at a tick by 500 ms after it
        // (444-512 ms measured beside other test runs), and a fixed 800 ms failed whenever the timer stalled 300 ms.
        var sinceLastReturn = Stopwatch.StartNew();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        while (!Released(statistics) && sinceLastReturn.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(5);
            statistics = pool.GetStatistics();
        }

        TimeSpan releasedAfter = sinceLastReturn.Elapsed;
        TestContext.Current.TestOutputHelper?.WriteLine($"margin: released {releasedAfter.TotalMilliseconds:F0} ms after the last return, {time.Firings - firingsAtStart} firings so far");
        if (releasedAfter < delay * 2)
        {
            Thread.Sleep(delay * 2 - releasedAfter);
        }

        TimeSpan ran = Stopwatch.GetElapsedTime(start);
        int firings = time.Firings - firingsAtStart;

        // All gone by now but the one the exited returner parked in its slot (its retirement may restart its wait).
        Assert.True(Released(statistics), $"the regions were not released as they came due: {statistics}");

        // A period of 100 ms; the bound allows eight firings per period (the ticker's grid), half as much again for
        // firings a millisecond early.
        double bound = (ran / (delay / IdleClock.TicksPerDelay) * 8 * 1.5) + 5;
        Assert.True(firings <= bound, $"{firings} firings in {ran.TotalMilliseconds} ms (bound {bound})");
    }

    private static bool Released(TieredMemoryPoolStatistics statistics) =>
        statistics.Large.BytesRetained <= 32 * 1024 && statistics.BytesAwaitingRelease == 0;

    /// <summary>The system clock, counting its timer's firings (a clock of its own, so a ticker of its own).</summary>
    private sealed class CountingSystemTime : TimeProvider
    {
        private int _firings;

        public int Firings => Volatile.Read(ref _firings);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            System.CreateTimer(s => { Interlocked.Increment(ref _firings); callback(s); }, state, dueTime, period);
    }
}
