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
/// <remarks>Two threads spin against each other; alone, each has a core.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class RacingDisposeSafetyTests
{
    private const int Iterations = 2_000;

    // Diagnostic mode captures two stacks per buffer (tens of microseconds each), and its owners are safe by construction.
    private const int DiagnosticIterations = 200;

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void TwoThreadsDisposingTheSameOwnerAtOnceNeverHandItsBlockToTwoRenters(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        int iterations = mode == OwnerMode.DiagnosticsAll ? DiagnosticIterations : Iterations;
        var race = new DisposeRace(pool, size);
        race.Run(iterations);
        Assert.Equal(iterations, race.Completed);
    }

    /// <summary>
    /// The test thread and one partner, in lockstep through spinning handshakes: each iteration both dispose the same
    /// owner at a shared instant (shifted by a random few hundred nanoseconds, so over the iterations the two calls
    /// overlap at every offset), then each rents one buffer of the size on its own thread (the medium tier caches per
    /// thread). The test thread checks that the two new owners, and those of the last few iterations still held,
    /// share no byte and keep their stamps.
    /// </summary>
    private sealed class DisposeRace
    {
        private const int Window = 4;
        private static readonly long s_timeout = Stopwatch.Frequency * 20;
        private static readonly long s_lead = Stopwatch.Frequency / 200_000;
        private static readonly long s_maxJitter = Math.Max(1, Stopwatch.Frequency / 3_000_000);

        private readonly TieredMemoryPool _pool;
        private readonly int _size;
        private IMemoryOwner<byte>? _target;
        private IMemoryOwner<byte>? _partnerRent;
        private long _startAt;
        private long _partnerDelay;
        private volatile int _go;
        private volatile int _done;
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
                for (int i = 1; i <= iterations; i++)
                {
                    IMemoryOwner<byte> target = _pool.Rent(_size);
                    long jitter = random.NextInt64(-s_maxJitter, s_maxJitter + 1);
                    _target = target;
                    _partnerDelay = Math.Max(0, -jitter);
                    _startAt = Stopwatch.GetTimestamp() + s_lead;
                    _go = i;

                    SpinUntil(_startAt + Math.Max(0, jitter));
                    target.Dispose();
                    IMemoryOwner<byte> mine = _pool.Rent(_size);
                    WaitForPartner(i);

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
                partner.Join();
            }

            Assert.Null(_partnerError);
            while (held.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) entry))
            {
                entry.Owner.Dispose();
            }
        }

        private void WaitForPartner(int iteration)
        {
            long deadline = Stopwatch.GetTimestamp() + s_timeout;
            var spin = default(SpinWait);
            while (_done != iteration)
            {
                Assert.Null(_partnerError);
                Assert.True(Stopwatch.GetTimestamp() < deadline, $"iteration {iteration}: the partner thread stopped answering");
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }

        private void Partner()
        {
            try
            {
                for (int expected = 1; ; expected++)
                {
                    var spin = default(SpinWait);
                    while (_go != expected)
                    {
                        if (_stop)
                        {
                            return;
                        }

                        spin.SpinOnce(sleep1Threshold: -1);
                    }

                    IMemoryOwner<byte> target = _target!;
                    SpinUntil(_startAt + _partnerDelay);
                    target.Dispose();
                    _partnerRent = _pool.Rent(_size);
                    _done = expected;
                }
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                _partnerError = error;
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
