using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Threads rent random sizes across the tiers, stamp each buffer, check the stamp before disposing, dispose twice now
/// and then (at once, or much later from any thread), hand owners to each other to dispose, and, with a clock, leak
/// some; meanwhile another thread trims, and with a clock also moves it (so quarantines end and let-go memory is
/// unmapped). Every failure is collected as a message: a stamp lost, two live owners sharing a byte, a live owner's
/// memory unmapped, a leaked block handed out within its quarantine.
/// </summary>
internal sealed class SafetyStorm
{
    private const int MaxHeldPerWorker = 8;

    private readonly TieredMemoryPool _pool;
    private readonly FakeTimeProvider? _clock;
    private readonly int _leakPercent;
    private readonly List<(OwnerRange Range, DateTimeOffset QuarantinedUntilAtLeast)> _leaked = [];
    private readonly ReaderWriterLockSlim _world = new(LockRecursionPolicy.NoRecursion);
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
    private long _clockTicks;
    private long _leaks;
    private volatile bool _stop;

    /// <param name="pool">The pool to storm.</param>
    /// <param name="clock">
    /// When given, the trimming thread also moves the pool's clock (a tick of the idle releaser at a time), and
    /// both it and every trim run while the workers are held between operations; then every live owner's memory is
    /// checked mapped and stamped before they go on, and workers check a buffer is mapped before they touch it,
    /// so memory unmapped under a live owner fails an assertion instead of crashing the test host.
    /// </param>
    /// <param name="leakPercent">With a clock: of the owners a worker is done with, the share it drops without dispose.</param>
    public SafetyStorm(TieredMemoryPool pool, FakeTimeProvider? clock, int leakPercent = 0)
    {
        _pool = pool;
        _clock = clock;
        _leakPercent = leakPercent;
    }

    public ConcurrentQueue<string> Failures { get; } = new();

    public long Rents => Interlocked.Read(ref _rents);

    public long StaleDisposes => Interlocked.Read(ref _staleDisposes);

    public long CrossThreadDisposes => Interlocked.Read(ref _crossThreadDisposes);

    public long Trims => Interlocked.Read(ref _trims);

    public long ClockTicks => Interlocked.Read(ref _clockTicks);

    public long Leaks => Interlocked.Read(ref _leaks);

    /// <summary>
    /// Storms for at least <paramref name="duration"/>, and on (up to ten times as long, on a loaded machine) until
    /// <paramref name="enough"/> says the storm did what it is for; stops early at the first failure.
    /// </summary>
    public void Run(int workers, TimeSpan duration, Func<SafetyStorm, bool> enough)
    {
        var threads = new List<Thread>();
        for (int i = 0; i < workers; i++)
        {
            int seed = i + 1;
            threads.Add(new Thread(() => Guard(() => Work(seed))) { IsBackground = true, Name = $"storm worker {seed}" });
        }

        threads.Add(new Thread(() => Guard(_clock is null ? Trim : TrimAndTick)) { IsBackground = true, Name = "storm trimmer" });
        threads.ForEach(static thread => thread.Start());
        var elapsed = Stopwatch.StartNew();
        while ((elapsed.Elapsed < duration || !enough(this)) && elapsed.Elapsed < duration * 10 && Failures.IsEmpty)
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

        while (_toDisposeAgain.TryDequeue(out IMemoryOwner<byte>? stale))
        {
            stale.Dispose();
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

    private void TrimAndTick()
    {
        for (int round = 0; !_stop && Failures.IsEmpty; round++)
        {
            _world.EnterWriteLock();
            try
            {
                if (round % 3 != 2)
                {
                    _pool.Trim();
                    Interlocked.Increment(ref _trims);
                }

                if (round % 3 != 0)
                {
                    _clock!.Advance(SafetyCases.IdleDelay / 4);
                    Interlocked.Increment(ref _clockTicks);
                }

                if (_leakPercent > 0 && round % 8 == 0)
                {
                    // Leaked owners die young: their blocks' finalizers then run on the finalizer thread, meanwhile.
                    GC.Collect(0);
                }

                CheckEveryLiveOwner(round);
            }
            finally
            {
                _world.ExitWriteLock();
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>With the workers held: every live owner's memory is still mapped and still carries its stamp.</summary>
    private void CheckEveryLiveOwner(int round)
    {
        lock (_liveLock)
        {
            foreach ((OwnerRange range, long stamp) in _live)
            {
                if (!ProcessMappings.IsMappedNow(range.Start, range.Length))
                {
                    Failures.Enqueue($"round {round}: the live owner {range} (stamp {stamp}) is no longer mapped after a trim or a tick of the idle releaser");
                    _stop = true;
                    return;
                }

                if (!SafetyCases.HasStampAt(range, stamp))
                {
                    Failures.Enqueue($"round {round}: the live owner {range} lost its stamp {stamp} in a trim or a tick of the idle releaser");
                    _stop = true;
                    return;
                }
            }
        }
    }

    private void Work(int seed)
    {
        var random = new Random(seed);
        var held = new List<(IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp)>();
        while (!_stop && Failures.IsEmpty)
        {
            bool goOn = true;
            EnterWorld();
            try
            {
                goOn = Step(random, held);
            }
            finally
            {
                ExitWorld();
            }

            if (!goOn)
            {
                return;
            }
        }

        EnterWorld();
        try
        {
            foreach ((IMemoryOwner<byte> owner, OwnerRange range, long stamp) in held)
            {
                if (Failures.IsEmpty)
                {
                    Dispose((owner, range, stamp), random);
                }
            }
        }
        finally
        {
            ExitWorld();
        }
    }

    private bool Step(Random random, List<(IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp)> held)
    {
        int action = random.Next(100);
        if (action < 45 || held.Count == 0)
        {
            return held.Count >= MaxHeldPerWorker || TryRent(random, held);
        }

        if (action < 80)
        {
            int index = random.Next(held.Count);
            (IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) entry = held[index];
            held.RemoveAt(index);
            if (_clock is not null && random.Next(100) < _leakPercent && Leak(entry))
            {
                return true;
            }

            if (random.Next(4) == 0)
            {
                // Someone else disposes it.
                _handedOver.Enqueue(entry);
                return true;
            }

            return Dispose(entry, random);
        }

        if (action < 90)
        {
            if (_handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) entry))
            {
                Interlocked.Increment(ref _crossThreadDisposes);
                return Dispose(entry, random);
            }

            return true;
        }

        if (_toDisposeAgain.TryDequeue(out IMemoryOwner<byte>? stale))
        {
            // A stale dispose, much later and maybe on another thread than the first.
            stale.Dispose();
            Interlocked.Increment(ref _staleDisposes);
        }

        return true;
    }

    /// <summary>Drops a live owner without dispose (its stamp checked first); false when the check failed.</summary>
    private bool Leak((IMemoryOwner<byte> Owner, OwnerRange Range, long Stamp) entry)
    {
        if (!SafetyCases.HasStamp(entry.Owner, entry.Stamp, "storm"))
        {
            Failures.Enqueue($"the live owner {entry.Range} lost its stamp {entry.Stamp}: another owner wrote into its block");
            return false;
        }

        lock (_liveLock)
        {
            _live.Remove((entry.Range, entry.Stamp));

            // Its finalizer runs now or later: its block is quarantined at least until a delay from now.
            _leaked.Add((entry.Range, _clock!.GetUtcNow() + SafetyCases.IdleDelay));
        }

        Interlocked.Increment(ref _leaks);
        return true;
    }

    private void EnterWorld()
    {
        if (_clock is not null)
        {
            _world.EnterReadLock();
        }
    }

    private void ExitWorld()
    {
        if (_clock is not null)
        {
            _world.ExitReadLock();
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

        if (_clock is not null && !ProcessMappings.IsMappedNow(range.Start, range.Length))
        {
            Failures.Enqueue($"a rent of {size} bytes got {range}, which is not mapped");
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

            if (_clock is not null)
            {
                DateTimeOffset now = _clock.GetUtcNow();
                _leaked.RemoveAll(leak => leak.QuarantinedUntilAtLeast <= now);
                foreach ((OwnerRange leak, DateTimeOffset until) in _leaked)
                {
                    if (leak.Overlaps(range))
                    {
                        Failures.Enqueue($"a rent of {size} bytes got {range}, which overlaps the block {leak} of an owner leaked less than a delay ago (its quarantine lasts until {until:HH:mm:ss.f} at least, the clock says {now:HH:mm:ss.f})");
                        return false;
                    }
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
        if (_clock is not null && !ProcessMappings.IsMappedNow(entry.Range.Start, entry.Range.Length))
        {
            Failures.Enqueue($"the live owner {entry.Range} (stamp {entry.Stamp}) is no longer mapped");
            return false;
        }

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
        < 85 => random.Next(1024, (16 * 1024) + 1),
        < 97 => random.Next((16 * 1024) + 1, (2 * 1024 * 1024) + 1),
        _ => random.Next((2 * 1024 * 1024) + 1, 6_000_000),
    };
}
