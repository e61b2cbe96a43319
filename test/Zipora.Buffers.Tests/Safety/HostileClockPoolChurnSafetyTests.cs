using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Pools churned on a hostile clock (attack round 8): many pools made, used, disposed and dropped on one clock that
/// fails its reads now and then, refuses new due times in bursts and fires its timers early and on several threads at
/// once, while the ticker replaces its timer. Once the clock heals, every pool on it must tick again by itself and give
/// back what waits.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class HostileClockPoolChurnSafetyTests
{
    private const int LargeSize = 100_000;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    public void PoolsChurnedOnAClockThatFailsAndReplacesItsTimerAllTickAgainOnceItHeals(int seed, bool withAPoolOfAnHoursPeriod)
    {
        var clock = new HostileClock();

        // Optionally a pool with a four-hour delay (an hour's period) shares the clock, as any pools of mixed delays may.
        using TieredMemoryPool? hourly = withAPoolOfAnHoursPeriod
            ? new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = TimeSpan.FromHours(4) })
            : null;
        IdleTicker ticker = IdleTicker.For(clock);
        var random = new Random(seed);
        var live = new List<TieredMemoryPool>();
        var arrays = new List<TieredArrayPool>();
        var disposed = new List<TieredMemoryPool>();
        var lateReturns = new List<(IMemoryOwner<byte> Owner, TieredMemoryPool Pool)>();
        var returnedLate = new List<OwnerRange>();
        long before = BackgroundFailures.Count;
        try
        {
            for (int round = 0; round < 80; round++)
            {
                // The clock misbehaves in a new way each round.
                clock.Heal();
                switch (random.Next(5))
                {
                    case 0: clock.FailNextReads(1 + random.Next(3)); break;
                    case 1: clock.FailNextChanges(1 + random.Next(4)); break;
                    case 2: clock.FailEveryNthRead(2 + random.Next(3)); break;
                    case 3: clock.FailNextReads(1); clock.FailNextChanges(2); break;
                    default: break;
                }

                // Pools come and go, each start and wake reading the clock.
                MakeOrDispose(clock, random, live, arrays, disposed, lateReturns, returnedLate);
                clock.Fake.Advance(TimeSpan.FromMilliseconds(100 + random.Next(1_500)));
                if (random.Next(3) == 0)
                {
                    clock.FireEveryTimerConcurrently(2 + random.Next(2));
                }
                else if (random.Next(2) == 0)
                {
                    clock.FireEveryTimerNow();
                }

                foreach (TieredMemoryPool pool in live)
                {
                    string? negative = SafetyCases.NegativeFigures(pool.GetStatistics());
                    Assert.True(negative is null, $"round {round}: negative figures: {negative}");
                }
            }
        }
        finally
        {
            clock.Heal();
            BackgroundFailureWatch.ProvokedSince(before);
        }

        Assert.True(clock.Thrown > 0, "the clock never threw");

        // Healed for good: within four delays every live pool and array pool lets its idle memory go, and every
        // disposed one unmaps what came back late.
        SafetyCases.Advance(clock.Fake, 4 * s_delay);
        var stuck = new List<string>();
        for (int i = 0; i < live.Count; i++)
        {
            long retained = live[i].GetStatistics().Large.BytesRetained;
            if (retained != 0)
            {
                stuck.Add($"live pool {i} retains {retained} region bytes ({live[i].IdleTicks} ticks)");
            }
        }

        for (int i = 0; i < arrays.Count; i++)
        {
            long retained = arrays[i].GetStatistics().BytesRetained;
            if (retained != 0)
            {
                stuck.Add($"array pool {i} retains {retained} bytes");
            }
        }

        for (int i = 0; i < disposed.Count; i++)
        {
            TieredMemoryPoolStatistics statistics = disposed[i].GetStatistics();
            if (statistics.BytesAwaitingRelease != 0 || statistics.BytesQuarantined != 0)
            {
                stuck.Add($"disposed pool {i} holds {statistics.BytesAwaitingRelease} bytes awaiting release and {statistics.BytesQuarantined} quarantined ({disposed[i].IdleTicks} ticks)");
            }
        }

        // A region unmapped on time may have had its addresses mapped again for a buffer still held: those are not counted.
        List<OwnerRange> held = lateReturns.ConvertAll(static late => SafetyCases.RangeOf(late.Owner));
        List<OwnerRange> mapped = returnedLate.FindAll(range => ProcessMappings.IsMapped(range.Start, range.Length) && !held.Exists(range.Overlaps));
        Assert.True(
            stuck.Count == 0 && mapped.Count == 0,
            $"four delays after the clock healed (seed {seed}, {(withAPoolOfAnHoursPeriod ? "with" : "without")} a pool of an hour's period, {ticker.Scheduled} releasers scheduled), idle release has not resumed everywhere: {string.Join("; ", stuck)}; {mapped.Count} regions returned late to disposed pools are still mapped");
        lateReturns.ForEach(static late => late.Owner.Dispose());
        live.ForEach(static pool => pool.Dispose());
        GC.KeepAlive(arrays);
    }

    private static void MakeOrDispose(
        HostileClock clock,
        Random random,
        List<TieredMemoryPool> live,
        List<TieredArrayPool> arrays,
        List<TieredMemoryPool> disposed,
        List<(IMemoryOwner<byte> Owner, TieredMemoryPool Pool)> lateReturns,
        List<OwnerRange> returnedLate)
    {
        switch (random.Next(4))
        {
            case 0:
                TieredMemoryPool? made = TryMake(() => new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, clock)));
                if (made is not null)
                {
                    for (int i = 0; i < 2; i++)
                    {
                        using IMemoryOwner<byte> owner = made.Rent(LargeSize);
                        owner.Memory.Span[0] = 1;
                    }

                    live.Add(made);
                }

                break;
            case 1:
                TieredArrayPool? array = TryMake(() => new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = clock, IdleReleaseDelay = s_delay }));
                if (array is not null)
                {
                    array.Return(array.Rent(LargeSize));
                    arrays.Add(array);
                }

                break;
            case 2 when live.Count > 0:
                TieredMemoryPool victim = live[random.Next(live.Count)];
                _ = live.Remove(victim);
                lateReturns.Add((victim.Rent(LargeSize), victim));
                Exception? fromDispose = Record.Exception(victim.Dispose);
                Assert.True(fromDispose is null, $"a pool's Dispose threw on a hostile clock: {fromDispose}");
                disposed.Add(victim);
                break;
            case 3 when lateReturns.Count > 0:
                (IMemoryOwner<byte> late, TieredMemoryPool _) = lateReturns[0];
                lateReturns.RemoveAt(0);
                returnedLate.Add(SafetyCases.RangeOf(late));
                Exception? fromReturn = Record.Exception(late.Dispose);
                Assert.True(fromReturn is null, $"a late return's Dispose threw on a hostile clock: {fromReturn}");
                break;
            default:
                break;
        }
    }

    /// <summary>A pool made on the hostile clock, or null when its constructor's own clock read threw (the caller's to handle).</summary>
    private static T? TryMake<T>(Func<T> make)
        where T : class
    {
        try
        {
            return make();
        }
        catch (InvalidOperationException error) when (error.Message.StartsWith(HostileClock.Message, StringComparison.Ordinal))
        {
            return null;
        }
    }
}
