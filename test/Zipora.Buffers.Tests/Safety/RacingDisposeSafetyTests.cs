using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// With <see cref="TieredMemoryPoolOptions.ReuseOwners"/> off, two threads disposing the same owner at the same
/// instant return its block once: the renters after them never share a byte.
/// </summary>
public sealed class RacingDisposeSafetyTests
{
    private const int Iterations = 2_000;

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void TwoThreadsDisposingTheSameOwnerAtOnceNeverHandItsBlockToTwoRenters(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        var race = new DisposeRace(pool, size);
        race.Run(Iterations);
        Assert.Equal(Iterations, race.Completed);
    }

    /// <summary>
    /// The test thread and one partner, in lockstep: each iteration both dispose the same owner at a shared instant
    /// (shifted by a random few hundred nanoseconds, so over the iterations the two calls overlap at every offset),
    /// then each rents one buffer of the size on its own thread (the medium tier caches per thread). The test thread
    /// checks the two new owners, and those of the last few iterations still held, share no byte and keep their stamps.
    /// </summary>
    private sealed class DisposeRace
    {
        private const int Window = 4;
        private static readonly TimeSpan s_phaseTimeout = TimeSpan.FromSeconds(20);
        private static readonly long s_lead = Stopwatch.Frequency / 20_000;
        private static readonly long s_maxJitter = Math.Max(1, Stopwatch.Frequency / 3_000_000);

        private readonly TieredMemoryPool _pool;
        private readonly int _size;
        private readonly Barrier _barrier = new(2);
        private IMemoryOwner<byte>? _target;
        private IMemoryOwner<byte>? _partnerRent;
        private long _startAt;
        private long _partnerDelay;
        private volatile bool _stop;
        private Exception? _partnerError;

        public DisposeRace(TieredMemoryPool pool, int size)
        {
            _pool = pool;
            _size = size;
        }

        public int Completed { get; private set; }

        public void Run(int iterations)
        {
            var partner = new Thread(Partner) { IsBackground = true, Name = "dispose race partner" };
            partner.Start();
            var random = new Random(_size);
            var held = new Queue<(IMemoryOwner<byte> Owner, long Stamp)>();
            try
            {
                for (int i = 0; i < iterations; i++)
                {
                    IMemoryOwner<byte> target = _pool.Rent(_size);
                    long jitter = random.NextInt64(-s_maxJitter, s_maxJitter + 1);
                    _target = target;
                    _partnerDelay = Math.Max(0, -jitter);
                    _startAt = Stopwatch.GetTimestamp() + s_lead;
                    Phase();

                    SpinUntil(_startAt + Math.Max(0, jitter));
                    target.Dispose();
                    IMemoryOwner<byte> mine = _pool.Rent(_size);
                    Phase();

                    IMemoryOwner<byte> theirs = _partnerRent!;
                    var live = new List<IMemoryOwner<byte>> { mine, theirs };
                    foreach ((IMemoryOwner<byte> owner, _) in held)
                    {
                        live.Add(owner);
                    }

                    SafetyCases.AssertDisjoint(live, $"iteration {i}: after two threads disposed one owner at once");
                    SafetyCases.Stamp(mine, (2L * i) + 1, "mine");
                    SafetyCases.Stamp(theirs, (2L * i) + 2, "theirs");
                    held.Enqueue((mine, (2L * i) + 1));
                    held.Enqueue((theirs, (2L * i) + 2));
                    foreach ((IMemoryOwner<byte> owner, long stamp) in held)
                    {
                        Assert.True(SafetyCases.HasStamp(owner, stamp, "held"), $"iteration {i}: a held owner lost its stamp {stamp}: another renter wrote into its block");
                    }

                    while (held.Count > 2 * Window)
                    {
                        held.Dequeue().Owner.Dispose();
                    }

                    Completed++;
                }
            }
            finally
            {
                _stop = true;
                _barrier.RemoveParticipant();
                partner.Join();
            }

            Assert.Null(_partnerError);
            while (held.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) entry))
            {
                entry.Owner.Dispose();
            }
        }

        private void Phase()
        {
            bool met = _barrier.SignalAndWait(s_phaseTimeout);
            Assert.Null(_partnerError);
            Assert.True(met, "the partner thread stopped answering");
        }

        private void Partner()
        {
            try
            {
                while (_barrier.SignalAndWait(s_phaseTimeout) && !_stop)
                {
                    IMemoryOwner<byte> target = _target!;
                    SpinUntil(_startAt + _partnerDelay);
                    target.Dispose();
                    _partnerRent = _pool.Rent(_size);
                    if (!_barrier.SignalAndWait(s_phaseTimeout) || _stop)
                    {
                        return;
                    }
                }
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                _partnerError = error;
                _barrier.RemoveParticipant();
            }
        }

        private static void SpinUntil(long timestamp)
        {
            while (Stopwatch.GetTimestamp() < timestamp)
            {
                Thread.SpinWait(1);
            }
        }
    }
}
