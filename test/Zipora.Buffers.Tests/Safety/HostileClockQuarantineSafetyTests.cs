using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Attacks on the leak quarantine stamped with the idle clock's tick: on a clock whose reads throw now and then, whose
/// timers fire early, twice or on two threads at once, or which jumps on irregularly, a leaked block of every tier and
/// both owner modes must stay quarantined (not handed out, still mapped, its contents intact) until a full delay after
/// its finalizer ran on the fake clock, and leave the quarantine once the clock behaves. Runs in the collection of the
/// tests that provoke background failures: it provokes background failures and forces collections.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class HostileClockQuarantineSafetyTests
{
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;

    /// <summary>What the clock does while a leaked block is in quarantine.</summary>
    public enum Hostility
    {
        EveryThirdReadThrows,
        TimersFireEarlyAndTwice,
        TimersFireOnTwoThreadsAtOnce,
        IrregularLateJumps,
        DisposedPoolWithEarlyFirings,
    }

    public static TheoryData<int, OwnerMode, Hostility> TiersModesAndHostilities => SafetyCases.OneSizePerTierInBothModes(Enum.GetValues<Hostility>());

    [Theory]
    [MemberData(nameof(TiersModesAndHostilities))]
    public void ALeakedBlockStaysQuarantinedForAFullDelayOnAHostileClockAndLeavesOnceItBehaves(int size, OwnerMode mode, Hostility hostility)
    {
        var clock = new HostileClock();
        var random = new Random((size * 31) + ((int)mode * 7) + (int)hostility);
        using TieredMemoryPool pool = SafetyCases.Pool(mode, clock);
        long failuresBefore = BackgroundFailures.Count;

        // Leak at an odd moment within a period, after some ticks.
        SafetyCases.Advance(clock.Fake, TimeSpan.FromMilliseconds(3_000 + random.Next(2_500)));
        OwnerRange leaked = SafetyCases.LeakOne(pool, size);
        SafetyCases.CollectEverything();
        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);
        DateTimeOffset foundAt = clock.Fake.GetUtcNow();
        if (hostility == Hostility.DisposedPoolWithEarlyFirings)
        {
            pool.Dispose();
        }

        if (hostility == Hostility.EveryThirdReadThrows)
        {
            clock.FailEveryNthRead(3);
        }

        int step = 0;
        long ticksAtTheLeak = pool.IdleTicks;
        try
        {
            while (clock.Fake.GetUtcNow() - foundAt < s_delay)
            {
                step++;
                Misbehave(clock, random, hostility, foundAt);
                TimeSpan since = clock.Fake.GetUtcNow() - foundAt;
                if (since < s_delay)
                {
                    AssertStillQuarantined(pool, leaked, size, $"{hostility}, step {step}, {since.TotalMilliseconds} ms after the leak was found");
                }
            }
        }
        finally
        {
            clock.Heal();
            BackgroundFailureWatch.ProvokedSince(failuresBefore);
        }

        // The attack ran: the pool kept ticking through it, and a throwing clock was reported.
        Assert.True(pool.IdleTicks - ticksAtTheLeak >= 3, $"{hostility}: only {pool.IdleTicks - ticksAtTheLeak} ticks counted in the delay after the leak ({step} steps)");
        Assert.True(hostility != Hostility.EveryThirdReadThrows || clock.Thrown > 0, "the clock never threw");

        // Behaving from here on: within two delays the block leaves the quarantine.
        SafetyCases.Advance(clock.Fake, 2 * s_delay);
        long quarantined = pool.GetStatistics().BytesQuarantined;
        Assert.True(quarantined == 0, $"{hostility}: two delays after the clock behaved again, {quarantined} bytes are still in quarantine");
    }

    private static void Misbehave(HostileClock clock, Random random, Hostility hostility, DateTimeOffset foundAt)
    {
        // Never past the end of the delay in one step, so each check runs while the delay still holds.
        TimeSpan left = s_delay - (clock.Fake.GetUtcNow() - foundAt) - TimeSpan.FromMilliseconds(1);
        TimeSpan step = TimeSpan.FromMilliseconds(50 + random.Next(900));
        switch (hostility)
        {
            case Hostility.EveryThirdReadThrows:
                SafetyCases.Advance(clock.Fake, Min(step, left));
                break;
            case Hostility.TimersFireEarlyAndTwice:
            case Hostility.DisposedPoolWithEarlyFirings:
                clock.Fake.Advance(Min(step, left));
                clock.FireEveryTimerNow();
                if (random.Next(2) == 0)
                {
                    clock.FireEveryTimerNow();
                }

                break;
            case Hostility.TimersFireOnTwoThreadsAtOnce:
                clock.Fake.Advance(Min(step, left));
                clock.FireEveryTimerConcurrently(2);
                break;
            case Hostility.IrregularLateJumps:
                // One jump of up to 3 s: every tick it passes fires late, at its end.
                clock.Fake.Advance(Min(TimeSpan.FromMilliseconds(random.Next(3_000)), left));
                break;
        }

        if (left <= TimeSpan.Zero)
        {
            clock.Fake.Advance(TimeSpan.FromMilliseconds(2));
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? (a < TimeSpan.Zero ? TimeSpan.Zero : a) : (b < TimeSpan.Zero ? TimeSpan.Zero : b);

    private static void AssertStillQuarantined(TieredMemoryPool pool, OwnerRange leaked, int size, string when)
    {
        long quarantined = pool.GetStatistics().BytesQuarantined;
        Assert.True(quarantined >= leaked.Length, $"{when}: the leaked block {leaked} left the quarantine ({quarantined} bytes quarantined)");
        Assert.True(ProcessMappings.IsMapped(leaked.Start, leaked.Length), $"{when}: the leaked block {leaked} is no longer mapped");
        Assert.True(InteriorOf(leaked).IndexOfAnyExcept((byte)0x5A) < 0, $"{when}: the leaked block {leaked} lost its contents");
        if (!pool.IsDisposed)
        {
            var probes = new List<IMemoryOwner<byte>>();
            for (int i = 0; i < (size > 1_000_000 ? 2 : 16); i++)
            {
                probes.Add(pool.Rent(size));
            }

            foreach (IMemoryOwner<byte> probe in probes)
            {
                OwnerRange range = SafetyCases.RangeOf(probe);
                Assert.False(range.Overlaps(leaked), $"{when}: the leaked block {leaked} was handed to a new renter ({range})");
            }

            probes.ForEach(static probe => probe.Dispose());
        }
    }

    private static unsafe ReadOnlySpan<byte> InteriorOf(OwnerRange range) => new((byte*)range.Start + 1, range.Length - 2);
}
