using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The ticker's timer lives as long as its clock and ticks every pool on it: it must not carry the execution context
/// (the AsyncLocals) of whoever made the first pool into the ticks.
/// </summary>
public sealed class TickerExecutionContextTests
{
    private static readonly AsyncLocal<string?> s_request = new();

    [Fact]
    public void TheTicksDoNotRunInTheExecutionContextOfTheCallerThatMadeTheFirstPool()
    {
        var clock = new ContextRecordingClock();
        s_request.Value = "the first pool's caller";
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = clock, IdleReleaseDelay = TimeSpan.FromMilliseconds(40) });
        s_request.Value = null;
        try
        {
            Assert.True(SpinWait.SpinUntil(() => pool.IdleTicks >= 2, TimeSpan.FromSeconds(10)), $"the pool ticked {pool.IdleTicks} times in 10 s");
            Assert.True(clock.ReadOnTimerInContext == 0, $"{clock.ReadOnTimerInContext} of the ticker's clock reads on its timer ran with the AsyncLocal of the caller that made the first pool");
            Assert.True(clock.ReadOnTimer > 0, "the ticker never read the clock on its timer");
        }
        finally
        {
            pool.Dispose();
        }
    }

    /// <summary>The system's clock and timers, as a provider of its own (so a ticker of its own), recording the context of its reads off the test's thread.</summary>
    private sealed class ContextRecordingClock : TimeProvider
    {
        private readonly int _testThread = Environment.CurrentManagedThreadId;
        private int _readOnTimer;
        private int _readOnTimerInContext;

        public int ReadOnTimer => Volatile.Read(ref _readOnTimer);

        public int ReadOnTimerInContext => Volatile.Read(ref _readOnTimerInContext);

        public override long GetTimestamp()
        {
            if (Environment.CurrentManagedThreadId != _testThread)
            {
                Interlocked.Increment(ref _readOnTimer);
                if (s_request.Value is not null)
                {
                    Interlocked.Increment(ref _readOnTimerInContext);
                }
            }

            return base.GetTimestamp();
        }
    }
}
