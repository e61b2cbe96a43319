using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="TimeProvider"/> may run code when it is read: <see cref="FakeTimeProvider"/>'s <c>GetUtcNow</c> (and so
/// <c>GetTimestamp</c>) fires every timer that is due, on the reading thread. A pool that read its clock on a caller's
/// thread, inside a rent, a return, a trim or a statistics read, could so run its own idle tick in the middle of that
/// call, under locks it holds: a timestamped release tried on 2026-12-03 did, and a tick nested in a thread-exit
/// retirement retired the same slot twice and handed one region to two owners (RESULTS section 19). So a live pool
/// reads its clock only in its timer's callback; a leaked buffer found on the finalizer thread is stamped with the
/// idle clock's tick, not a timestamp. (Its ticker reads the clock when a pool is made and when a disposed pool's
/// paused releaser wakes, under no lock of a pool.)
/// </summary>
public sealed class ClockReadSafetyTests
{
    private static readonly int[] s_sizes = [100, 4_000, 20_000, 100_000, 3_000_000];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ALivePoolReadsItsClockOnlyInItsTimersCallback(bool reuseOwners)
    {
        var time = new CallbackOnlyClock();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, ReuseOwners = reuseOwners, RegionCacheMaxCount = 2 });
        time.StartCounting();

        // Rents and returns of every tier, on this thread and on threads that exit (their slots are retired), trims,
        // statistics, leaks (found on the finalizer thread) and ticks in between.
        for (int round = 0; round < 20; round++)
        {
            if (round % 4 == 1)
            {
                SafetyCases.Leak(pool, s_sizes[round % s_sizes.Length], count: 2);
                SafetyCases.CollectEverything();
            }

            RentAndReturn(pool, round);
            var thread = new Thread(() => RentAndReturn(pool, round));
            thread.Start();
            thread.Join();
            if (round % 3 == 0)
            {
                pool.Trim();
            }

            _ = pool.GetStatistics();
            time.Advance(SafetyCases.IdleDelay / 4);
        }

        // Ticks enough for the last leak's quarantine to end, so its release is among the reads counted.
        for (int tick = 0; tick < 2 * IdleClock.TicksPerDelay; tick++)
        {
            time.Advance(SafetyCases.IdleDelay / 4);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.LeaksReclaimed == 10, $"the 10 leaked buffers should have been reclaimed; {statistics.LeaksReclaimed} were");
        Assert.True(statistics.BytesQuarantined == 0, $"every leaked buffer should have left the quarantine; {statistics.BytesQuarantined} bytes are still in it");
        Assert.True(time.ReadsInCallbacks > 0, "the pool's ticks should have read the clock");
        Assert.True(time.ReadsOutsideCallbacks == 0, $"the pool read its clock {time.ReadsOutsideCallbacks} times outside its timer's callback, first from:\n{time.FirstOutsideRead}");
    }

    private static void RentAndReturn(TieredMemoryPool pool, int round)
    {
        var owners = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizes)
        {
            for (int i = 0; i <= round % 3; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span[0] = 1;
                owners.Add(owner);
            }
        }

        owners.ForEach(static owner => owner.Dispose());
    }

    /// <summary>A fake clock that counts the reads made outside the callbacks of the timers it created.</summary>
    private sealed class CallbackOnlyClock : TimeProvider
    {
#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
        [ThreadStatic]
        private static bool t_inCallback;
#pragma warning restore IDE1006

        private readonly FakeTimeProvider _time = new();
        private bool _counting;
        private int _readsOutside;
        private int _readsInside;

        public int ReadsOutsideCallbacks => Volatile.Read(ref _readsOutside);

        public int ReadsInCallbacks => Volatile.Read(ref _readsInside);

        public string? FirstOutsideRead { get; private set; }

        public override long TimestampFrequency => _time.TimestampFrequency;

        public void StartCounting() => Volatile.Write(ref _counting, true);

        public void Advance(TimeSpan by)
        {
            // The test's own read of the clock, not the pool's.
            bool counting = _counting;
            _counting = false;
            _time.Advance(by);
            _counting = counting;
        }

        public override DateTimeOffset GetUtcNow()
        {
            Count();
            return _time.GetUtcNow();
        }

        public override long GetTimestamp()
        {
            Count();
            return _time.GetTimestamp();
        }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            _time.CreateTimer(
                wrapped =>
                {
                    t_inCallback = true;
                    try
                    {
                        callback(wrapped);
                    }
                    finally
                    {
                        t_inCallback = false;
                    }
                },
                state,
                dueTime,
                period);

        private void Count()
        {
            if (t_inCallback)
            {
                Interlocked.Increment(ref _readsInside);
            }
            else if (Volatile.Read(ref _counting) && Interlocked.Increment(ref _readsOutside) == 1)
            {
                FirstOutsideRead = Environment.StackTrace;
            }
        }
    }
}
