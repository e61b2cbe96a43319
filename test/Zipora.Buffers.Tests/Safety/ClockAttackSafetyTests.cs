using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pools' clocks attacked (a hostile review, 2026-12-04): a clock that runs timers as it is read, clocks that
/// stand still, run backwards, jump by years or count oddly, a clock that counts no time, and delays from one tick to
/// <see cref="TimeSpan.MaxValue"/>. Nothing is corrupted or lost, no timer fires in a tight loop, a clock that cannot
/// count is refused by name. Some cases make the background work fail on purpose.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class ClockAttackSafetyTests
{
    /// <summary>
    /// A fake clock with <see cref="FakeTimeProvider.AutoAdvanceAmount"/> runs due timers on the thread that reads it.
    /// A late return to a disposed pool reads the clock (waking its paused releaser): it read it while it held the
    /// slab heap's lock, halfway through taking a slab out of its list, and a timer that returned another block of that
    /// pool there entered the heap again (a monitor lets the same thread in): the outer removal took out the wrong slab,
    /// which was then never unmapped, and the next return found its block in no slab. The wake now comes after the lock.
    /// </summary>
    [Fact]
    public void ALateReturnToADisposedPoolWhoseClockRunsATimerOnReadKeepsEverySlabFindable()
    {
        var clock = new FakeTimeProvider();
        var delay = TimeSpan.FromSeconds(1);
        long before = BackgroundFailures.Count;
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, TimeProvider = clock });

        // 4 KB blocks: 16 to a 64 KB slab, carved in order, so rents 0, 16 and 32 are the first blocks of three slabs.
        List<IMemoryOwner<byte>> owners = [.. Enumerable.Range(0, 48).Select(_ => pool.Rent(4096))];
        IMemoryOwner<byte>[] kept = [owners[0], owners[16], owners[32]];
        for (int i = 0; i < owners.Count; i++)
        {
            nint slabStart = OwnerAddress.Of(owners[i / 16 * 16]);
            nint address = OwnerAddress.Of(owners[i]);
            Assert.True(address >= slabStart && address < slabStart + (64 * 1024), "precondition: 16 blocks per slab, carved in order");
            if (i % 16 != 0)
            {
                owners[i].Dispose();
            }
        }

        pool.Dispose();

        // The disposed pool has nothing waiting (every slab still has a block out): its releaser pauses.
        SafetyCases.Advance(clock, 4 * delay);

        // The slab heap keeps its slabs sorted by address.
        IMemoryOwner<byte>[] byAddress = [.. kept.OrderBy(OwnerAddress.Of)];
        bool ranInsideTheReturn = false;
        bool returning = false;
        clock.AutoAdvanceAmount = TimeSpan.FromMilliseconds(1);
        using ITimer timer = clock.CreateTimer(
            _ =>
            {
                ranInsideTheReturn = returning;
                byAddress[0].Dispose();
            },
            null,
            TimeSpan.FromMilliseconds(1),
            Timeout.InfiniteTimeSpan);

        // Returns the middle slab's last block: its slab goes, and the releaser wakes, reading the clock.
        returning = true;
        byAddress[1].Dispose();
        returning = false;
        clock.AutoAdvanceAmount = TimeSpan.Zero;
        Assert.True(ranInsideTheReturn, "precondition: the clock ran the timer while the late return read it");

        Exception? error = Record.Exception(() => byAddress[2].Dispose());
        BackgroundFailureWatch.ProvokedSince(before);
        Assert.True(error is null, $"the last slab's block could not be returned after a timer the clock ran inside another late return had returned a block: {error}");
    }

    public static TheoryData<string> Scripts =>
    [
        "frozen", "backwards", "max", "min", "alternating-extremes", "jump-years-each-read", "freq1-seconds", "freqmax",
    ];

    private static ScriptedTimestamps Script(string name) => name switch
    {
        "frozen" => new(_ => 12345, Stopwatch.Frequency),
        "backwards" => new(read => -read * 1_000_000, Stopwatch.Frequency),
        "max" => new(read => read == 1 ? 0 : long.MaxValue, Stopwatch.Frequency),
        "min" => new(read => read == 1 ? 0 : long.MinValue, Stopwatch.Frequency),
        "alternating-extremes" => new(read => read % 2 == 0 ? long.MaxValue : long.MinValue, Stopwatch.Frequency),
        "jump-years-each-read" => new(read => read * 365L * 24 * 3600 * Stopwatch.Frequency, Stopwatch.Frequency),
        "freq1-seconds" => new(_ => Stopwatch.GetTimestamp() / Stopwatch.Frequency, 1),
        "freqmax" => new(_ => Stopwatch.GetTimestamp(), long.MaxValue),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    /// <summary>Whatever the clock reads, the ticker's real timer fires no more often than a few times per period.</summary>
    [Theory]
    [MemberData(nameof(Scripts))]
    public void AnIdlePoolOnAnAdversarialClockDoesNotFireItsTimerInATightLoop(string script)
    {
        long before = BackgroundFailures.Count;
        ScriptedTimestamps clock = Script(script);
        Exception? made = Record.Exception(() =>
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromSeconds(1), TimeProvider = clock });
            var arrays = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.FromSeconds(1), TimeProvider = clock });
            pool.Rent(100_000).Dispose();
            pool.Rent(100).Dispose();
            arrays.Return(arrays.Rent(1000));
            long readsBefore = clock.Reads;
            TimeSpan cpuBefore = ProcessCpu.UsedSoFar();
            Thread.Sleep(1000);
            long reads = clock.Reads - readsBefore;
            TimeSpan cpu = ProcessCpu.UsedSoFar() - cpuBefore;
            TestContext.Current.TestOutputHelper?.WriteLine($"{script}: {reads} reads, {cpu.TotalMilliseconds} ms CPU in 1 s");

            // Period 250 ms: about 8 firings in 1 s, two reads each, and retries an eighth of a period apart.
            Assert.True(reads < 200, $"{script}: {reads} clock reads in 1 s of an idle 250 ms period ({cpu.TotalMilliseconds} ms CPU)");
            GC.KeepAlive(arrays);
        });
        BackgroundFailureWatch.ProvokedSince(before);
        TestContext.Current.TestOutputHelper?.WriteLine($"{script}: constructor/use error: {made?.GetType().Name} {made?.Message}; failures reported {BackgroundFailures.Count - before}");
        Assert.Null(made);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    public void AClockWhoseTimestampsCountNoTimeIsRefusedByName(long frequency)
    {
        var clock = new ScriptedTimestamps(_ => Stopwatch.GetTimestamp(), frequency);
        var pool = Assert.Throws<ArgumentException>(() => new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock }));
        var arrays = Assert.Throws<ArgumentException>(() => new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = clock }));
        Assert.Equal(nameof(TieredMemoryPoolOptions.TimeProvider), pool.ParamName);
        Assert.Equal(nameof(TieredArrayPoolOptions.TimeProvider), arrays.ParamName);
        Assert.Contains("TimestampFrequency", pool.Message, StringComparison.Ordinal);
    }

    public static TheoryData<long> ExtremeDelays => [1, TimeSpan.TicksPerMillisecond, TimeSpan.MaxValue.Ticks, TimeSpan.MaxValue.Ticks - 1, TimeSpan.FromDays(49.8).Ticks, long.MaxValue / 2];

    /// <summary>Extreme delays on a fake clock moved by years: nothing throws, nothing negative, memory goes back.</summary>
    [Theory]
    [MemberData(nameof(ExtremeDelays))]
    public void ExtremeDelaysWorkOnAClockMovedByYears(long delayTicks)
    {
        long before = BackgroundFailures.Count;
        var clock = new FakeTimeProvider();
        var delay = TimeSpan.FromTicks(delayTicks);
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, TimeProvider = clock });
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = delay, TimeProvider = clock });
        foreach (int size in new[] { 100, 4096, 100_000, 4 << 20 })
        {
            pool.Rent(size).Dispose();
        }

        arrays.Return(arrays.Rent(1000));
        for (int i = 0; i < 20; i++)
        {
            clock.Advance(TimeSpan.FromDays(365 * 100));
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            Assert.True(statistics.BytesRetained >= 0 && statistics.Large.BytesRetained >= 0 && statistics.Small.BytesRetained >= 0, "negative figure");
        }

        pool.Trim();
        arrays.Trim();
        BackgroundFailureWatch.ProvokedSince(before);
        Assert.Equal(0, BackgroundFailures.Count - before);
    }

    /// <summary>A clock that reads what the test scripts, at the frequency it says; its timers are the system's (real time).</summary>
    private sealed class ScriptedTimestamps(Func<long, long> next, long frequency) : TimeProvider
    {
        private long _reads;

        public long Reads => Volatile.Read(ref _reads);

        public override long TimestampFrequency => frequency;

        public override long GetTimestamp() => next(Interlocked.Increment(ref _reads));
    }
}
