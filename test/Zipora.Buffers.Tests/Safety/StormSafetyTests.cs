using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Threads rent random sizes across the tiers, stamp each buffer, check the stamp before disposing, dispose twice
/// now and then (at once or much later, from any thread), hand owners to each other to dispose, while another
/// thread trims: no stamp is ever lost and no two live owners ever share a byte.
/// </summary>
public sealed class StormSafetyTests
{
    private static readonly TimeSpan s_duration = TimeSpan.FromMilliseconds(300);

    public static TheoryData<OwnerMode> Modes => [OwnerMode.Default, OwnerMode.PinnedArrays];

    [Theory]
    [MemberData(nameof(Modes))]
    public void RentingStampingAndDisposingTwiceAcrossThreadsWhileTrimmingNeverLosesAStampOrSharesABlock(OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        var storm = new Storm(pool);
        storm.Run(workers: 2, s_duration);

        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        Assert.True(storm.Rents > 1_000, $"only {storm.Rents} rents ran");
        Assert.True(storm.StaleDisposes > 10, $"only {storm.StaleDisposes} stale disposes ran");
        Assert.True(storm.CrossThreadDisposes > 10, $"only {storm.CrossThreadDisposes} owners were disposed by another thread");
        Assert.True(storm.Trims > 2, $"only {storm.Trims} trims ran");
    }

    private sealed class Storm
    {
        private const int MaxHeldPerWorker = 8;

        private readonly TieredMemoryPool _pool;
        private readonly Lock _liveLock = new();
        private readonly List<(OwnerRange Range, long Stamp)> _live = [];

        // Owners the storm will dispose again later. If the pool ever hands one of these objects out again, a stale
        // dispose could return a live renter's block; the storm stops there, before anyone writes to it.
        private readonly ConditionalWeakTable<IMemoryOwner<byte>, object> _disposedOnce = [];
        private readonly ConcurrentQueue<IMemoryOwner<byte>> _toDisposeAgain = new();
        private readonly ConcurrentQueue<(IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp)> _handedOver = new();
        private long _nextStamp;
        private long _rents;
        private long _staleDisposes;
        private long _crossThreadDisposes;
        private long _trims;
        private volatile bool _stop;

        public Storm(TieredMemoryPool pool) => _pool = pool;

        public ConcurrentQueue<string> Failures { get; } = new();

        public long Rents => Interlocked.Read(ref _rents);

        public long StaleDisposes => Interlocked.Read(ref _staleDisposes);

        public long CrossThreadDisposes => Interlocked.Read(ref _crossThreadDisposes);

        public long Trims => Interlocked.Read(ref _trims);

        public void Run(int workers, TimeSpan duration)
        {
            var threads = new List<Thread>();
            for (int i = 0; i < workers; i++)
            {
                int seed = i + 1;
                threads.Add(new Thread(() => Guard(() => Work(seed))) { IsBackground = true, Name = $"storm worker {seed}" });
            }

            threads.Add(new Thread(() => Guard(Trim)) { IsBackground = true, Name = "storm trimmer" });
            threads.ForEach(static thread => thread.Start());
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < duration && Failures.IsEmpty)
            {
                Thread.Sleep(10);
            }

            _stop = true;
            threads.ForEach(static thread => thread.Join());
            while (_handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) handed))
            {
                if (Failures.IsEmpty)
                {
                    handed.Owner.Dispose();
                }
            }
        }

        private void Guard(Action work)
        {
            try
            {
                work();
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                Failures.Enqueue($"{Thread.CurrentThread.Name} threw {error}");
                _stop = true;
            }
        }

        private void Trim()
        {
            while (!_stop)
            {
                _pool.Trim();
                Interlocked.Increment(ref _trims);
                Thread.Yield();
            }
        }

        private void Work(int seed)
        {
            var random = new Random(seed);
            var held = new List<(IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp)>();
            while (!_stop && Failures.IsEmpty)
            {
                int action = random.Next(100);
                if (action < 45 || held.Count == 0)
                {
                    if (held.Count < MaxHeldPerWorker && !TryRent(random, held))
                    {
                        return;
                    }
                }
                else if (action < 80)
                {
                    int index = random.Next(held.Count);
                    (IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) entry = held[index];
                    held.RemoveAt(index);
                    if (random.Next(4) == 0)
                    {
                        // Someone else disposes it.
                        _handedOver.Enqueue(entry);
                    }
                    else if (!Dispose(entry, random))
                    {
                        return;
                    }
                }
                else if (action < 90)
                {
                    if (_handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) entry))
                    {
                        Interlocked.Increment(ref _crossThreadDisposes);
                        if (!Dispose(entry, random))
                        {
                            return;
                        }
                    }
                }
                else if (_toDisposeAgain.TryDequeue(out IMemoryOwner<byte>? stale))
                {
                    // A stale dispose, much later and maybe on another thread than the first.
                    stale.Dispose();
                    Interlocked.Increment(ref _staleDisposes);
                }
            }

            foreach ((IMemoryOwner<byte> owner, OwnerRange range, long stamp) in held)
            {
                if (Failures.IsEmpty)
                {
                    Dispose((owner, range, stamp), random);
                }
            }
        }

        private bool TryRent(Random random, List<(IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp)> held)
        {
            int size = RandomSize(random);
            IMemoryOwner<byte> owner = _pool.Rent(size);
            Interlocked.Increment(ref _rents);
            if (_disposedOnce.TryGetValue(owner, out _))
            {
                Failures.Enqueue($"a rent of {size} bytes returned an owner object that was disposed before (and will be disposed again): the stale dispose would return this renter's block");
                return false;
            }

            OwnerRange range;
            try
            {
                range = SafetyCases.RangeOf(owner);
            }
            catch (ObjectDisposedException)
            {
                Failures.Enqueue($"a freshly rented owner of {size} bytes threw ObjectDisposedException: someone else's dispose returned its block");
                return false;
            }

            long stamp = Interlocked.Increment(ref _nextStamp);
            lock (_liveLock)
            {
                foreach ((OwnerRange other, long otherStamp) in _live)
                {
                    if (other.Overlaps(range))
                    {
                        Failures.Enqueue($"a rent of {size} bytes got {range}, which overlaps the live owner {other} (stamp {otherStamp})");
                        return false;
                    }
                }

                _live.Add((range, stamp));
            }

            SafetyCases.Stamp(owner, stamp, "storm");
            held.Add((owner, range, stamp));
            return true;
        }

        private bool Dispose((IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) entry, Random random)
        {
            bool intact;
            try
            {
                intact = SafetyCases.HasStamp(entry.Owner, entry.Stamp, "storm");
            }
            catch (ObjectDisposedException)
            {
                Failures.Enqueue($"the live owner {entry.Range} (stamp {entry.Stamp}) threw ObjectDisposedException before its dispose: someone else's dispose returned its block");
                return false;
            }

            if (!intact)
            {
                Failures.Enqueue($"the live owner {entry.Range} lost its stamp {entry.Stamp}: another owner wrote into its block");
                return false;
            }

            lock (_liveLock)
            {
                _live.Remove((entry.Range, entry.Stamp));
            }

            int how = random.Next(10);
            if (how < 3)
            {
                _disposedOnce.AddOrUpdate(entry.Owner, entry.Owner);
                entry.Owner.Dispose();
                _toDisposeAgain.Enqueue(entry.Owner);
            }
            else if (how < 4)
            {
                _disposedOnce.AddOrUpdate(entry.Owner, entry.Owner);
                entry.Owner.Dispose();
                entry.Owner.Dispose();
                Interlocked.Increment(ref _staleDisposes);
            }
            else
            {
                entry.Owner.Dispose();
            }

            return true;
        }

        private static int RandomSize(Random random) => random.Next(100) switch
        {
            < 55 => random.Next(1, 1024),
            < 85 => random.Next(1024, 16 * 1024 + 1),
            < 97 => random.Next((16 * 1024) + 1, (2 * 1024 * 1024) + 1),
            _ => random.Next((2 * 1024 * 1024) + 1, 6_000_000),
        };
    }
}
