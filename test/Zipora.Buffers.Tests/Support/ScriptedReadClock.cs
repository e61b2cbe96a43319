using System;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A fake clock whose timestamp reads follow a script counted from the moment it is written: the Nth read from then
/// may run an action first (to act in the middle of whatever read the clock, such as a tick) or throw. Its time and
/// timers are otherwise the fake's. Meant for one thread: the test's, and the fake timers it runs.
/// </summary>
internal sealed class ScriptedReadClock : TimeProvider
{
    /// <summary>What every exception this clock throws says.</summary>
    public const string Message = "the scripted test clock refused a timestamp read";

    private readonly Dictionary<long, Action> _actions = [];
    private readonly HashSet<long> _failures = [];
    private long _reads;

    public FakeTimeProvider Fake { get; } = new();

    /// <summary>Reads so far.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    public override long TimestampFrequency => Fake.TimestampFrequency;

    /// <summary>The <paramref name="readsFromNow"/>th read from now (1: the next) runs <paramref name="action"/> before it reads.</summary>
    public void RunAtRead(int readsFromNow, Action action) => _actions[Reads + readsFromNow] = action;

    /// <summary>The <paramref name="readsFromNow"/>th read from now (1: the next) throws.</summary>
    public void FailAtRead(int readsFromNow) => _failures.Add(Reads + readsFromNow);

    /// <summary>Whether every scripted read has happened.</summary>
    public bool ScriptDone => _actions.Count == 0 && _failures.Count == 0;

    public override DateTimeOffset GetUtcNow() => Fake.GetUtcNow();

    public override long GetTimestamp()
    {
        long read = Interlocked.Increment(ref _reads);
        if (_actions.Remove(read, out Action? action))
        {
            action();
        }

        return _failures.Remove(read) ? throw new InvalidOperationException(Message) : Fake.GetTimestamp();
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        Fake.CreateTimer(callback, state, dueTime, period);
}
