using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A leaked owner's block is quarantined for one whole idle delay after its finalizer ran (a Span of it may still be
/// running on some stack): nothing the pool does in that time (trims, rents, memory pressure, its cap, its own
/// dispose) hands the block to a new renter or unmaps it. After the delay it is released and reused.
/// </summary>
/// <remarks>Forces full garbage collections and reads the process's mappings, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class LeakQuarantineSafetyTests
{
    private const int Probes = 64;

    /// <summary>What a test does to the pool while a leaked block is in quarantine.</summary>
    public enum Pressure
    {
        Trim,
        RentManyOfTheSameSize,
        TrimWhileTheTierIsBusy,
        RentAtTheCap,
        DisposeThePool,
    }

    public static TheoryData<int, OwnerMode, Pressure> TiersModesAndPressures
    {
        get
        {
            var data = new TheoryData<int, OwnerMode, Pressure>();
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                foreach (OwnerMode mode in SafetyCases.BothOwnerModes)
                {
                    foreach (Pressure pressure in Enum.GetValues<Pressure>())
                    {
                        data.Add(size, mode, pressure);
                    }
                }
            }

            return data;
        }
    }

    /// <summary>Every tier in both modes, leaked at the start of a tick of the idle releaser (every quarter delay) or just before the next one.</summary>
    public static TheoryData<int, OwnerMode, double> TiersModesAndLeakTimes => SafetyCases.OneSizePerTierInBothModes(0.0, 2.4);

    [Theory]
    [MemberData(nameof(TiersModesAndPressures))]
    public void NothingWithinOneDelayHandsOutOrUnmapsALeakedBlock(int size, OwnerMode mode, Pressure pressure)
    {
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        if (pressure == Pressure.RentAtTheCap)
        {
            options.MaxBytesInUse = size > 2 * 1024 * 1024 ? 16L * 1024 * 1024 : 2L * 1024 * 1024;
        }

        using var pool = new TieredMemoryPool(options);
        OwnerRange leaked = LeakAndCollect(pool, size);
        SafetyCases.Advance(time, TimeSpan.FromSeconds(9));
        AssertQuarantined(leaked, [], "9 s after the leak");

        var probes = new List<IMemoryOwner<byte>>();
        switch (pressure)
        {
            case Pressure.Trim:
                pool.Trim();
                AssertQuarantined(leaked, probes, "after Trim()");
                RentProbes(pool, size, probes);
                break;
            case Pressure.RentManyOfTheSameSize:
                RentProbes(pool, size, probes);
                break;
            case Pressure.TrimWhileTheTierIsBusy:
                // What the pool does when the GC reports high memory load, while the tier has buffers out.
                RentProbes(pool, size, probes);
                pool.Trim();
                AssertQuarantined(leaked, probes, "after a memory-pressure trim");
                pool.Trim();
                RentProbes(pool, size, probes);
                break;
            case Pressure.RentAtTheCap:
                // At MaxBytesInUse a rent first makes the pool release its idle memory, then throws.
                Assert.Throws<InsufficientMemoryException>(() => RentUntilRefused(pool, size, probes));
                AssertQuarantined(leaked, probes, $"after {probes.Count} rents up to the cap and one refused");

                // Another rent at the cap may be refused again, but it must not be served with the leaked block.
                Exception? refused = Record.Exception(() => probes.Add(pool.Rent(size)));
                Assert.True(refused is null or InsufficientMemoryException, $"a rent at the cap threw {refused}");
                break;
            case Pressure.DisposeThePool:
                pool.Dispose();
                break;
        }

        AssertQuarantined(leaked, probes, $"after {pressure}");
        if (pressure == Pressure.DisposeThePool)
        {
            // The disposed pool's timer lives on until its memory has waited out its delays, then lets it all go.
            SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
            if (ProcessMappings.CanRead)
            {
                Assert.False(ProcessMappings.IsMapped(leaked.Start, leaked.Length), $"the leaked block {leaked} of a disposed pool is still mapped three delays later");
            }
        }
        else
        {
            AssertCountedInQuarantine(pool, leaked, $"after {pressure}");
            SafetyCases.Advance(time, TimeSpan.FromSeconds(4));
            TieredMemoryPoolStatistics released = pool.GetStatistics();
            Assert.Equal(1, released.LeaksReclaimed);
            Assert.Equal(0, released.BytesQuarantined);
        }

        probes.ForEach(static probe => probe.Dispose());
    }

    [Theory]
    [MemberData(nameof(TiersModesAndLeakTimes))]
    public void ALeakedBlockIsQuarantinedForAtLeastOneFullDelay(int size, OwnerMode mode, double leakAtSeconds)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        SafetyCases.Advance(time, TimeSpan.FromSeconds(leakAtSeconds));
        OwnerRange leaked = LeakAndCollect(pool, size);

        SafetyCases.Advance(time, TimeSpan.FromSeconds(9.9));
        var probes = new List<IMemoryOwner<byte>>();
        RentProbes(pool, size, probes);
        AssertQuarantined(leaked, probes, $"9.9 s after a leak at {leakAtSeconds} s");
        AssertCountedInQuarantine(pool, leaked, $"9.9 s after a leak at {leakAtSeconds} s");

        SafetyCases.Advance(time, TimeSpan.FromSeconds(13 - 9.9));
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        Assert.Equal(1, released.LeaksReclaimed);
        Assert.Equal(0, released.BytesQuarantined);
        probes.ForEach(static probe => probe.Dispose());
    }

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInBothOwnerModes), MemberType = typeof(SafetyCases))]
    public void AfterItsQuarantineALeakedBlockIsReleasedAndCanBeRentedAgain(int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        OwnerRange leaked = LeakAndCollect(pool, size);
        SafetyCases.Advance(time, TimeSpan.FromSeconds(9));
        var probes = new List<IMemoryOwner<byte>>();
        RentProbes(pool, size, probes);
        AssertQuarantined(leaked, probes, "9 s after the leak");
        AssertCountedInQuarantine(pool, leaked, "9 s after the leak");

        // Past the delay plus a tick of the idle releaser (a quarter delay).
        SafetyCases.Advance(time, TimeSpan.FromSeconds(4));
        TieredMemoryPoolStatistics released = pool.GetStatistics();
        Assert.Equal(1, released.LeaksReclaimed);
        Assert.Equal(0, released.BytesQuarantined);

        bool cameBack = false;
        for (int i = 0; i < Probes && !cameBack; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            probes.Add(owner);
            cameBack = SafetyCases.RangeOf(owner).Overlaps(leaked);
        }

        Assert.True(cameBack, $"the leaked block {leaked} was not handed out again in {Probes} rents after its quarantine");
        probes.ForEach(static probe => probe.Dispose());
    }

    /// <summary>Every tier in both modes, leaked at once or after the disposed pool's timer found nothing waiting for two delays.</summary>
    public static TheoryData<int, OwnerMode, int> TiersModesAndWaitsBeforeTheLeak => SafetyCases.OneSizePerTierInBothModes(0, 20);

    [Theory]
    [MemberData(nameof(TiersModesAndWaitsBeforeTheLeak))]
    public void AnOwnerLeakedAfterItsPoolWasDisposedIsQuarantinedThenUnmapped(int size, OwnerMode mode, int secondsBeforeTheLeak)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        List<IMemoryOwner<byte>> holder = SafetyCases.RentAndDisposeThePool(pool, size);
        SafetyCases.Advance(time, TimeSpan.FromSeconds(secondsBeforeTheLeak));
        OwnerRange leaked = SafetyCases.LeakFrom(holder);
        SafetyCases.CollectEverything();
        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);

        SafetyCases.Advance(time, TimeSpan.FromSeconds(9));
        AssertQuarantined(leaked, [], "9 s after a leak from a disposed pool");
        AssertCountedInQuarantine(pool, leaked, "9 s after a leak from a disposed pool");

        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        if (ProcessMappings.CanRead)
        {
            Assert.False(ProcessMappings.IsMapped(leaked.Start, leaked.Length), $"the leaked block {leaked} of a disposed pool is still mapped three delays after its quarantine");
        }
    }

    /// <summary>Leaks one buffer and collects it; asserts its finalizer reclaimed it (the quarantine statistics are checked by the tests, after the safety checks).</summary>
    private static OwnerRange LeakAndCollect(TieredMemoryPool pool, int size)
    {
        long before = pool.GetStatistics().LeaksReclaimed;
        OwnerRange leaked = SafetyCases.LeakOne(pool, size);
        SafetyCases.CollectEverything();
        Assert.Equal(before + 1, pool.GetStatistics().LeaksReclaimed);
        return leaked;
    }

    /// <summary>The leaked block is not any live owner's and is still mapped and writable.</summary>
    private static void AssertQuarantined(OwnerRange leaked, List<IMemoryOwner<byte>> probes, string when)
    {
        foreach (IMemoryOwner<byte> probe in probes)
        {
            OwnerRange range = SafetyCases.RangeOfLive(probe, when);
            Assert.False(range.Overlaps(leaked), $"{when}: the leaked block {leaked} was handed to a new renter ({range}) within its quarantine");
        }

        if (ProcessMappings.CanRead)
        {
            Assert.True(ProcessMappings.IsMapped(leaked.Start, leaked.Length), $"{when}: the leaked block {leaked}, within its quarantine, is no longer mapped ({ProcessMappings.Describe(leaked.Start, leaked.Length)})");

            // Not decommitted either: a Span of the leaked owner may still be reading it (the leak filled it with 0x5A;
            // the checks write one byte at each end).
            Assert.True(InteriorOf(leaked).IndexOfAnyExcept((byte)0x5A) < 0, $"{when}: the leaked block {leaked}, within its quarantine, lost its contents (its pages were dropped or it was written)");
            SafetyCases.AssertMappedAndWritable(leaked, $"{when}: the leaked block, within its quarantine,");
        }
    }

    /// <summary>The statistics count the leaked block in quarantine.</summary>
    private static void AssertCountedInQuarantine(TieredMemoryPool pool, OwnerRange leaked, string when)
    {
        long quarantined = pool.GetStatistics().BytesQuarantined;
        Assert.True(quarantined >= leaked.Length, $"{when}: BytesQuarantined is {quarantined} with the leaked block of {leaked.Length} bytes in quarantine");
    }

    private static unsafe ReadOnlySpan<byte> InteriorOf(OwnerRange range) => new((byte*)range.Start + 1, range.Length - 2);

    private static void RentProbes(TieredMemoryPool pool, int size, List<IMemoryOwner<byte>> probes)
    {
        for (int i = 0; i < Probes; i++)
        {
            probes.Add(pool.Rent(size));
        }
    }

    private static void RentUntilRefused(TieredMemoryPool pool, int size, List<IMemoryOwner<byte>> probes)
    {
        for (int i = 0; i < 1_000_000; i++)
        {
            probes.Add(pool.Rent(size));
        }
    }
}
