using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Attacks on the idle release of regions on a fake clock (written against a timestamped release that was then taken
/// back, see perf/RESULTS.md section 19): a thread exiting with a parked region late in its delay, a maximal delay on a
/// coarse clock, a dropped pool, and irregular clock jumps with cross-thread returns, trims and evictions. A region
/// returned less than a delay ago must stay mapped, what is due must go at the first tick after its delay, and ticks
/// must not storm.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class RegionReleaseTimingSafetyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;
    private static readonly TimeSpan s_period = s_delay / IdleClock.TicksPerDelay;
    private static readonly TimeSpan s_step = TimeSpan.FromMilliseconds(5);

    // A tick's lateness (the ticker rounds firings up to an eighth of a period), the fake clock's step and a millisecond.
    private static readonly TimeSpan s_lateness = (s_period / 8) + s_step + TimeSpan.FromMilliseconds(1);

    [Fact]
    public void ARegionParkedByAThreadThatExitsLateInItsDelayGoesBackAtTheFirstTickAfterTheDelay()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay });
        Step(time, s_period * 0.1);
        using var parked = new ManualResetEventSlim();
        using var exit = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            pool.Rent(LargeSize).Dispose();
            parked.Set();
            exit.Wait();
        });
        thread.Start();
        parked.Wait();

        // The thread exits just before the fourth tick; that tick retires its slot, and caches the region.
        Step(time, (s_period * 3.9) - (s_period * 0.1));
        exit.Set();
        thread.Join();

        // A slot stamps its park with a tick: a thread still alive has its slot emptied at the fifth tick (the first
        // whose stamp has waited a whole delay), and the region is unmapped then. An exited thread must not make it wait
        // a whole delay more.
        Step(time, s_period + s_lateness);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.Large.BytesRetained == 0 && statistics.BytesAwaitingRelease == 0,
            $"{time.GetUtcNow() - time.Start} after the start, {s_delay * 1.25} after the park, the region of an exited thread is still held: {statistics}");
    }

    [Fact]
    public void AMaximalDelayOnACoarseClockIsNotTickedEveryMillisecond()
    {
        var time = new CoarseTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.MaxValue });
        time.Fake.Advance(TimeSpan.FromSeconds(1));
        IMemoryOwner<byte> first = pool.Rent(LargeSize);
        pool.Rent(LargeSize).Dispose();
        first.Dispose();

        // The period is an hour (the longest); a region sits in the shared cache for good.
        time.Fake.Advance(TimeSpan.FromHours(1));
        int afterFirstTick = time.Firings;
        Assert.InRange(afterFirstTick, 1, 2);
        for (int i = 0; i < 200; i++)
        {
            time.Fake.Advance(TimeSpan.FromMilliseconds(1));
        }

        // The next tick is a period (an hour) later: a region cached for good adds no firing in between.
        Assert.True(time.Firings - afterFirstTick <= 1, $"{time.Firings - afterFirstTick} timer firings in 200 ms after the first tick of a pool whose period is an hour");
    }

    [Fact]
    public void APoolDroppedWithCachedRegionsKeepsThemMappedThroughTheirDelayThenLeavesTheTicker()
    {
        var time = new FakeTimeProvider();
        IdleTicker ticker = IdleTicker.For(time);
        List<OwnerRange> ranges = SafetyCases.DropAPoolWithCachedRegions(time, () => Step(time, s_period * 0.6));
        SafetyCases.CollectEverything();
        Step(time, s_period * 1.5);
        SafetyCases.CollectEverything();
        foreach (OwnerRange range in ranges)
        {
            SafetyCases.AssertMappedAndWritable(range, "a region of a dropped pool, returned a period and a half ago");
        }

        Step(time, s_delay + s_period);
        SafetyCases.CollectEverything();
        Step(time, s_period * 2);
        Assert.Equal(0, ticker.Scheduled);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void IrregularClockJumpsNeverUnmapARegionBeforeADelayAfterItsLastReturnAndEverythingIsAccounted(bool reuse, bool adaptive)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = s_delay, ReuseOwners = reuse, AdaptiveCaches = adaptive, RegionCacheMaxCount = 3, HugeRegionCacheMaxCount = 1, MaxRetainedBytes = 6 * 1024 * 1024 });
        var random = new Random(reuse ? 61 : 17);
        var returns = new Dictionary<nint, (int Length, DateTimeOffset At)>();
        var held = new List<IMemoryOwner<byte>>();
        int[] sizes = [20_000, 100_000, 700_000, 2_500_000, 4_000_000];
        for (int round = 0; round < 160; round++)
        {
            // Two short-lived threads rent and return; some of what they rent is handed back to this thread.
            var handed = new ConcurrentQueue<IMemoryOwner<byte>>();
            var threads = new Thread[2];
            for (int t = 0; t < threads.Length; t++)
            {
                int seed = random.Next();
                threads[t] = new Thread(() => RentAndReturn(pool, new Random(seed), sizes, handed, returns, time));
                threads[t].Start();
            }

            Array.ForEach(threads, static thread => thread.Join());
            held.AddRange(handed);
            if (held.Count > 6 || random.Next(4) == 0)
            {
                int index = random.Next(held.Count);
                Return(held[index], returns, time);
                held.RemoveAt(index);
            }

            if (random.Next(10) == 0)
            {
                pool.Trim();
            }

            JumpIrregularly(time, random, returns);
            AssertRecentReturnsMapped(returns, time, $"round {round}");
            string? negative = SafetyCases.NegativeFigures(pool.GetStatistics());
            Assert.True(negative is null, $"round {round}: {negative}");
        }

        // Disposed with owners still out; they come back late, at odd moments, and must be mapped a delay after that.
        pool.Dispose();
        foreach (IMemoryOwner<byte> owner in held)
        {
            Step(time, TimeSpan.FromMilliseconds(random.Next(1, 4_000)));
            Return(owner, returns, time);
            AssertRecentReturnsMapped(returns, time, "after dispose");
        }

        // A late return wakes the disposed pool's paused ticks; its mapping goes once its tick stamp has waited a whole
        // delay: by the fifth tick after the wake.
        Step(time, s_delay + (s_period * 2));
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.BytesAwaitingRelease == 0 && drained.BytesInUse == 0 && drained.BytesRetained == 0, $"a delay and two ticks after the last late return: {drained}");
        Assert.True(drained.MmapCalls - drained.FallbackAllocations == drained.MunmapCalls, $"{drained.MmapCalls} mmaps, {drained.MunmapCalls} munmaps: {drained}");
    }

    private static void RentAndReturn(TieredMemoryPool pool, Random random, int[] sizes, ConcurrentQueue<IMemoryOwner<byte>> handed, Dictionary<nint, (int, DateTimeOffset)> returns, FakeTimeProvider time)
    {
        var mine = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 6; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)] - random.Next(64));
            owner.Memory.Span[0] = 1;
            if (random.Next(5) == 0)
            {
                handed.Enqueue(owner);
                continue;
            }

            mine.Add(owner);
        }

        foreach (IMemoryOwner<byte> owner in mine)
        {
            lock (returns)
            {
                Return(owner, returns, time);
            }
        }
    }

    private static void Return(IMemoryOwner<byte> owner, Dictionary<nint, (int Length, DateTimeOffset At)> returns, FakeTimeProvider time)
    {
        OwnerRange range = SafetyCases.RangeOf(owner);
        owner.Dispose();
        returns[range.Start] = (range.Length, time.GetUtcNow());
    }

    /// <summary>Tiny steps, big jumps, and jumps that land exactly on (or a tick before) a return's due time.</summary>
    private static void JumpIrregularly(FakeTimeProvider time, Random random, Dictionary<nint, (int Length, DateTimeOffset At)> returns)
    {
        switch (random.Next(5))
        {
            case 0:
                time.Advance(TimeSpan.FromTicks(random.Next(1, 10_000)));
                break;
            case 1:
                time.Advance(s_period * (random.NextDouble() * 6));
                break;
            case 2:
                Step(time, TimeSpan.FromMilliseconds(random.Next(1, 3_000)));
                break;
            default:
                DateTimeOffset? due = null;
                foreach ((int _, DateTimeOffset at) in returns.Values)
                {
                    if (at + s_delay > time.GetUtcNow() && (due is null || at + s_delay < due))
                    {
                        due = at + s_delay;
                    }
                }

                if (due is { } exact)
                {
                    time.SetUtcNow(exact - TimeSpan.FromTicks(random.Next(2)));
                }

                break;
        }
    }

    private static void AssertRecentReturnsMapped(Dictionary<nint, (int Length, DateTimeOffset At)> returns, FakeTimeProvider time, string what)
    {
        foreach ((nint start, (int length, DateTimeOffset at)) in returns)
        {
            if (time.GetUtcNow() - at < s_delay && !ProcessMappings.IsMappedNow(start, length))
            {
                Assert.Fail($"{what}: a region returned {(time.GetUtcNow() - at).TotalMilliseconds} ms ago is unmapped ({ProcessMappings.Describe(start, length)})");
            }
        }
    }

    /// <summary>Moves a fake clock on in steps of <see cref="s_step"/>, so every timer fires near its due time.</summary>
    private static void Step(FakeTimeProvider time, TimeSpan by)
    {
        DateTimeOffset target = time.GetUtcNow() + by;
        while (time.GetUtcNow() + s_step <= target)
        {
            time.Advance(s_step);
        }

        time.Advance(target - time.GetUtcNow());
    }

    /// <summary>A clock of millisecond timestamps (frequency 1000) on a fake clock; counts its timer's firings.</summary>
    private sealed class CoarseTimeProvider : TimeProvider
    {
        private int _firings;

        public FakeTimeProvider Fake { get; } = new();

        public int Firings => Volatile.Read(ref _firings);

        public override long TimestampFrequency => 1000;

        public override long GetTimestamp() => Fake.GetUtcNow().Ticks / TimeSpan.TicksPerMillisecond;

        public override DateTimeOffset GetUtcNow() => Fake.GetUtcNow();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            Fake.CreateTimer(s => { Interlocked.Increment(ref _firings); callback(s); }, state, dueTime, period);
    }
}
