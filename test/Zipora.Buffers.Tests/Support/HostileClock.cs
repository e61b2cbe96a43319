using System;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A fake clock that misbehaves on demand: its timestamp reads throw (always, for the next few reads, every Nth
/// read, or on any thread but the test's), its timers refuse a new due time (throwing, or returning false) and may
/// wait in their dispose for their callbacks to end, and the test can fire its timers' callbacks early, twice, or on
/// two threads at once. Its time and its timers are otherwise the fake's, moved by
/// <see cref="FakeTimeProvider.Advance"/> on the test's thread.
/// </summary>
internal sealed class HostileClock : TimeProvider
{
    /// <summary>What every exception this clock throws says.</summary>
    public const string Message = "the hostile test clock refused";

    private static int s_clocksMade;

    private readonly List<HostileTimer> _timers = [];
    private readonly Lock _lock = new();
    private int _failingReads;
    private int _failingReadsThread = -1;
    private int _failingChanges;
    private int _silentlyRefusedChanges;
    private int _failingCreates;
    private int _timersMade;
    private int _disposeWaitsTimedOut;
    private int _timersDisposed;
    private int _failEveryNth;
    private long _reads;
    private int _testThread = -1;
    private int _thrown;

    public FakeTimeProvider Fake { get; } = new();

    /// <summary>
    /// Ends the text of every exception this clock throws, and of no other clock's: a test counts the failures its own
    /// clock caused among the events a listener records, where an event an earlier test's clock caused may still be
    /// written late (events are written from a work item).
    /// </summary>
    public string Signature { get; } = $"(hostile clock {Interlocked.Increment(ref s_clocksMade)})";

    /// <summary>Every timestamp read throws while set.</summary>
    public bool Broken { get; set; }

    /// <summary>Failed timestamp reads throw an <see cref="UnprintableException"/>, whose description itself throws.</summary>
    public bool Undescribable { get; init; }

    /// <summary>
    /// A timer's dispose waits for its callbacks running at the time to end, as <c>Timer.Dispose(WaitHandle)</c>
    /// lets a caller wait (up to 5 s here; see <see cref="DisposeWaitsTimedOut"/>).
    /// </summary>
    public bool DisposeWaitsForCallbacks { get; init; }

    /// <summary>Timer disposals that gave up waiting for a callback after 5 s: one disposed on its own callback waits for itself.</summary>
    public int DisposeWaitsTimedOut => Volatile.Read(ref _disposeWaitsTimedOut);

    /// <summary>A timer's dispose throws (after disposing the fake timer underneath).</summary>
    public bool DisposeThrows { get; init; }

    /// <summary>Timers made so far (those whose making threw are not counted).</summary>
    public int TimersMade => Volatile.Read(ref _timersMade);

    /// <summary>Timers disposed so far.</summary>
    public int TimersDisposed => Volatile.Read(ref _timersDisposed);

    /// <summary>Exceptions thrown so far (reads and timer changes).</summary>
    public int Thrown => Volatile.Read(ref _thrown);

    public override long TimestampFrequency => Fake.TimestampFrequency;

    /// <summary>The next <paramref name="count"/> timestamp reads throw.</summary>
    public void FailNextReads(int count) => FailNextReads(count, onThread: -1);

    /// <summary>The next <paramref name="count"/> timestamp reads made on the calling thread throw; other threads' work.</summary>
    public void FailNextReadsOnThisThread(int count) => FailNextReads(count, Environment.CurrentManagedThreadId);

    /// <summary>The next <paramref name="count"/> calls of a timer's Change throw.</summary>
    public void FailNextChanges(int count) => Volatile.Write(ref _failingChanges, count);

    /// <summary>The next <paramref name="count"/> calls of a timer's Change return false and change nothing, as a disposed timer's do.</summary>
    public void RefuseNextChangesSilently(int count) => Volatile.Write(ref _silentlyRefusedChanges, count);

    /// <summary>The next <paramref name="count"/> calls of <see cref="CreateTimer"/> throw.</summary>
    public void FailNextCreates(int count) => Volatile.Write(ref _failingCreates, count);

    /// <summary>Every <paramref name="n"/>th timestamp read throws (0: none).</summary>
    public void FailEveryNthRead(int n) => Volatile.Write(ref _failEveryNth, n);

    /// <summary>Reads on any thread but the calling one throw (a finalizer's, a work item's), until <see cref="WorkEverywhere"/>.</summary>
    public void FailOffThisThread() => Volatile.Write(ref _testThread, Environment.CurrentManagedThreadId);

    /// <summary>Reads work on every thread again.</summary>
    public void WorkEverywhere() => Volatile.Write(ref _testThread, -1);

    /// <summary>
    /// Leaks the owner in <paramref name="holder"/> (rented from <paramref name="pool"/>, which is disposed and whose
    /// releaser has paused) while reads fail off the test thread, so the leak's wake on the finalizer thread fails
    /// (both of its attempts); then heals. Asserts the leak was reclaimed and declares the two failures.
    /// </summary>
    public OwnerRange LeakWhileTheWakeFailsOffThisThread(TieredMemoryPool pool, List<System.Buffers.IMemoryOwner<byte>> holder)
    {
        long before = BackgroundFailures.Count;
        FailOffThisThread();
        OwnerRange leaked = SafetyCases.LeakFrom(holder);
        SafetyCases.CollectEverything();
        Heal();
        long failures = BackgroundFailures.Count - before;
        BackgroundFailureWatch.Provoked(failures);
        Assert.Equal(1, pool.GetStatistics().LeaksReclaimed);

        // The wake reads the clock twice (a failed read is made once more at once); both fail off the test thread.
        Assert.Equal(2, failures);
        return leaked;
    }

    /// <summary>Every misbehaviour off.</summary>
    public void Heal()
    {
        Broken = false;
        FailNextReads(0);
        FailNextChanges(0);
        RefuseNextChangesSilently(0);
        FailNextCreates(0);
        FailEveryNthRead(0);
        WorkEverywhere();
    }

    public override DateTimeOffset GetUtcNow() => Fake.GetUtcNow();

    public override long GetTimestamp()
    {
        long read = Interlocked.Increment(ref _reads);
        int testThread = Volatile.Read(ref _testThread);
        int nth = Volatile.Read(ref _failEveryNth);
        if (Broken
            || (testThread != -1 && Environment.CurrentManagedThreadId != testThread)
            || (nth > 0 && read % nth == 0)
            || (Volatile.Read(ref _failingReadsThread) is int onThread && (onThread == -1 || onThread == Environment.CurrentManagedThreadId) && TakeOne(ref _failingReads)))
        {
            Interlocked.Increment(ref _thrown);
            throw Undescribable ? new UnprintableException() : new InvalidOperationException($"{Message} a timestamp read {Signature}");
        }

        return Fake.GetTimestamp();
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (TakeOne(ref _failingCreates))
        {
            Interlocked.Increment(ref _thrown);
            throw new InvalidOperationException($"{Message} a new timer {Signature}");
        }

        Interlocked.Increment(ref _timersMade);
        var timer = new HostileTimer(this, callback, state);
        timer.Inner = Fake.CreateTimer(static hostile => ((HostileTimer)hostile!).Fire(), timer, dueTime, period);
        lock (_lock)
        {
            _timers.Add(timer);
        }

        return timer;
    }

    /// <summary>Runs every timer's callback now on the calling thread, whether due or not: an early or a second firing.</summary>
    public void FireEveryTimerNow()
    {
        foreach (HostileTimer timer in Timers())
        {
            timer.Fire();
        }
    }

    /// <summary>Runs every timer's callback on <paramref name="threads"/> threads at once, and waits for them.</summary>
    public void FireEveryTimerConcurrently(int threads)
    {
        HostileTimer[] timers = Timers();
        using var go = new ManualResetEventSlim();
        var workers = new Thread[threads];
        Exception? escaped = null;
        for (int i = 0; i < threads; i++)
        {
            workers[i] = new Thread(() =>
            {
                go.Wait();
                foreach (HostileTimer timer in timers)
                {
                    Exception? error = Record.Exception(timer.Fire);
                    if (error is not null)
                    {
                        Interlocked.CompareExchange(ref escaped, error, null);
                    }
                }
            });
            workers[i].Start();
        }

        go.Set();
        foreach (Thread worker in workers)
        {
            Assert.True(worker.Join(TimeSpan.FromSeconds(30)), "a concurrent timer firing did not end within 30 s (deadlock?)");
        }

        Assert.True(escaped is null, $"an exception left a timer's callback fired concurrently: {escaped}");
    }

    private void FailNextReads(int count, int onThread)
    {
        Volatile.Write(ref _failingReadsThread, onThread);
        Volatile.Write(ref _failingReads, count);
    }

    private HostileTimer[] Timers()
    {
        lock (_lock)
        {
            return [.. _timers];
        }
    }

    private bool TakeOne(ref int counter)
    {
        while (true)
        {
            int left = Volatile.Read(ref counter);
            if (left <= 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref counter, left - 1, left) == left)
            {
                return true;
            }
        }
    }

    private sealed class HostileTimer(HostileClock clock, TimerCallback callback, object? state) : ITimer
    {
        private int _running;

        public ITimer Inner { get; set; } = null!;

        public void Fire()
        {
            Interlocked.Increment(ref _running);
            try
            {
                callback(state);
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            if (clock.TakeOne(ref clock._failingChanges))
            {
                Interlocked.Increment(ref clock._thrown);
                throw new InvalidOperationException($"{Message} a timer's new due time {clock.Signature}");
            }

            return !clock.TakeOne(ref clock._silentlyRefusedChanges) && Inner.Change(dueTime, period);
        }

        public void Dispose()
        {
            if (clock.DisposeWaitsForCallbacks && !SpinWait.SpinUntil(() => Volatile.Read(ref _running) == 0, TimeSpan.FromSeconds(5)))
            {
                Interlocked.Increment(ref clock._disposeWaitsTimedOut);
            }

            Inner.Dispose();
            Interlocked.Increment(ref clock._timersDisposed);
            if (clock.DisposeThrows)
            {
                throw new InvalidOperationException($"{Message} a timer's dispose {clock.Signature}");
            }
        }

        public System.Threading.Tasks.ValueTask DisposeAsync()
        {
            Dispose();
            return default;
        }
    }
}
