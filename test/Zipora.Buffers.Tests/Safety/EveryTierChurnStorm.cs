using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="EveryTierChurnSafetyTests"/>' storm: short-lived threads rent every tier, stamp each owner, hand owners
/// to each other and dispose them after checking their stamps, while a chaos thread trims, ticks and reads the
/// statistics.
/// </summary>
internal sealed class EveryTierChurnStorm(TieredMemoryPool pool, FakeTimeProvider time)
{
    private readonly Lock _liveLock = new();
    private readonly Dictionary<long, OwnerRange> _live = [];
    private readonly ConcurrentQueue<(IMemoryOwner<byte> Owner, long Stamp)> _handed = new();
    private long _nextStamp;
    private long _rents;
    private long _chaos;
    private volatile bool _stop;

    public ConcurrentQueue<string> Failures { get; } = new();

    public long Rents => Interlocked.Read(ref _rents);

    public long Chaos => Interlocked.Read(ref _chaos);

    public void Run(TimeSpan duration, int workers)
    {
        var threads = new List<Thread>();
        for (int i = 0; i < workers; i++)
        {
            int lane = i;
            threads.Add(new Thread(() => Guard(() => Spawner(lane))) { IsBackground = true });
        }

        threads.Add(new Thread(() => Guard(ChaosLoop)) { IsBackground = true });
        threads.ForEach(t => t.Start());
        // The duration, longer on a machine so loaded that the workers have not made the rents the test asks for.
        var elapsed = Stopwatch.StartNew();
        while ((elapsed.Elapsed < duration || Rents <= 2_000) && elapsed.Elapsed < duration * 6 && Failures.IsEmpty)
        {
            Thread.Sleep(10);
        }

        _stop = true;
        threads.ForEach(t => t.Join());
        while (_handed.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) handed))
        {
            DisposeChecked(handed.Owner, handed.Stamp);
        }
    }

    private void Guard(Action work)
    {
        try
        {
            work();
        }
        catch (Exception error)
        {
            Failures.Enqueue(error.ToString());
            _stop = true;
        }
    }

    // Each lane runs short-lived threads one after another: each rents and returns a while, then dies.
    private void Spawner(int lane)
    {
        for (int generation = 0; !_stop; generation++)
        {
            int seed = (lane * 100_000) + generation;
            var worker = new Thread(() => Guard(() => Work(seed))) { IsBackground = true };
            worker.Start();
            worker.Join();
        }
    }

    private void Work(int seed)
    {
        var random = new Random(seed);
        var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
        int operations = random.Next(20, 400);
        for (int op = 0; op < operations && !_stop; op++)
        {
            int action = random.Next(100);
            if (held.Count < 6 && (action < 50 || held.Count == 0))
            {
                Rent(random, held);
            }
            else if (action < 80 && held.Count > 0)
            {
                int index = random.Next(held.Count);
                (IMemoryOwner<byte> Owner, long Stamp) entry = held[index];
                held.RemoveAt(index);
                DisposeChecked(entry.Owner, entry.Stamp);
            }
            else if (action < 90 && held.Count > 0)
            {
                int index = random.Next(held.Count);
                _handed.Enqueue(held[index]);
                held.RemoveAt(index);
            }
            else if (_handed.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) handed))
            {
                DisposeChecked(handed.Owner, handed.Stamp);
            }
        }

        // Most die with nothing held; some hand what they hold to others, so their returns land elsewhere.
        foreach ((IMemoryOwner<byte> Owner, long Stamp) entry in held)
        {
            if (random.Next(2) == 0)
            {
                _handed.Enqueue(entry);
            }
            else
            {
                DisposeChecked(entry.Owner, entry.Stamp);
            }
        }
    }

    private void Rent(Random random, List<(IMemoryOwner<byte> Owner, long Stamp)> held)
    {
        int size = EveryTierChurnSafetyTests.RandomSize(random);
        IMemoryOwner<byte> owner = pool.Rent(size);
        Interlocked.Increment(ref _rents);
        if (owner.Memory.Length < size)
        {
            Failures.Enqueue($"a rent of {size} got {owner.Memory.Length} bytes");
            _stop = true;
            return;
        }

        OwnerRange range = SafetyCases.RangeOf(owner);
        long stamp = Interlocked.Increment(ref _nextStamp);
        lock (_liveLock)
        {
            foreach (KeyValuePair<long, OwnerRange> other in _live)
            {
                if (other.Value.Overlaps(range))
                {
                    Failures.Enqueue($"a rent of {size} got {range}, which overlaps the live owner {other.Value} (stamp {other.Key})");
                    _stop = true;
                    return;
                }
            }

            _live.Add(stamp, range);
        }

        SafetyCases.Stamp(owner, stamp, "attack");
        held.Add((owner, stamp));
    }

    private void DisposeChecked(IMemoryOwner<byte> owner, long stamp)
    {
        if (!SafetyCases.HasStamp(owner, stamp, "attack"))
        {
            Failures.Enqueue($"the live owner {SafetyCases.RangeOf(owner)} lost its stamp {stamp}");
            _stop = true;
            return;
        }

        lock (_liveLock)
        {
            _live.Remove(stamp);
        }

        owner.Dispose();
    }

    private void ChaosLoop()
    {
        var random = new Random(12345);
        while (!_stop)
        {
            switch (random.Next(4))
            {
                case 0:
                    pool.Trim();
                    break;
                case 1:
                    time.Advance(SafetyCases.IdleDelay / 4);
                    break;
                default:
                    if (SafetyCases.NegativeFigures(pool.GetStatistics()) is { } negative)
                    {
                        Failures.Enqueue($"negative figures while busy: {negative}");
                    }

                    break;
            }

            Interlocked.Increment(ref _chaos);
            Thread.Sleep(random.Next(0, 2));
        }
    }
}
