using System;
using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A background failure's report runs where nothing may throw (a timer's callback, a finalizer, a catch under the
/// pools' locks), and most often where managed memory ran out: it allocates nothing before its guard, and the events
/// keep being written after posts that ran out of memory.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class BackgroundReportSafetyTests
{
    // Each report at the limit costs a full collection of the filled heap (about 70 ms): 2,000 took two and a half
    // minutes, near the child's timeout. The first report at the limit threw on the code this guards.
    private const int ReportsAtTheLimit = 200;

    /// <summary>
    /// With no listener a report only counts: on the previous code it allocated the closure of its event (40 bytes) on
    /// entry, before its guard, because the lambda captured the report's own parameters; at the heap limit that threw
    /// out of the idle ticker's timer callback in one run in two under load.
    /// </summary>
    [Fact]
    public void AReportWithNoListenerAllocatesNothing()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(BackgroundReportSafetyTests), nameof(AReportWithNoListenerAllocatesNothing)))
        {
            return;
        }

        Assert.False(ZiporaBuffersEventSource.Log.IsEnabled(), "a listener is enabled in the child process");
        var error = new InvalidOperationException("provoked");
        long failures = BackgroundFailures.Count;
        BackgroundFailures.Report("the first report, which compiles the path", error);

        long allocated = ThreadAllocations.During(() => BackgroundFailures.Report("a report with no listener", error));

        BackgroundFailureWatch.ProvokedSince(failures);
        Assert.Equal(2, BackgroundFailures.Count - failures);
        Assert.True(allocated == 0, $"a report with no listener allocated {allocated} bytes: at the GC heap limit it would throw where nothing may");
    }

    /// <summary>
    /// With a listener and the heap full, every report is counted and none throws (its event is lost and counted as
    /// such); once there is room again a report's event is written, so no failure at the limit left the event writer
    /// stuck.
    /// </summary>
    [Fact]
    public void ReportsAtTheHeapLimitNeverThrowAndEventsFlowAgainAfterIt()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(BackgroundReportSafetyTests), nameof(ReportsAtTheHeapLimitNeverThrowAndEventsFlowAgainAfterIt)))
        {
            return;
        }

        using var listener = new FailureListener();
        var error = new InvalidOperationException("provoked");
        long failures = BackgroundFailures.Count;
        BackgroundFailures.Report("a report with room", error);
        Assert.True(listener.Saw("a report with room", TimeSpan.FromSeconds(10)), "the report made with room was never written");

        Exception? thrown = null;
        int reported = 0;
        var worker = new Thread(() => thrown = HeapFiller.OutOfMemoryFrom(() =>
        {
            for (; reported < ReportsAtTheLimit; reported++)
            {
                BackgroundFailures.Report("a report at the heap limit", error);
            }
        }));
        worker.Start();
        worker.Join();

        BackgroundFailures.Report("a report after the limit", error);
        BackgroundFailureWatch.ProvokedSince(failures);
        Assert.True(thrown is null, $"report {reported} of {ReportsAtTheLimit} at the heap limit threw: {thrown}");
        Assert.Equal(ReportsAtTheLimit + 2, BackgroundFailures.Count - failures);
        Assert.True(listener.Saw("a report after the limit", TimeSpan.FromSeconds(10)), $"no event was written after the heap limit ({EventsOffTheCaller.Lost} lost for want of memory)");
    }

    private sealed class FailureListener : PoolEventListener
    {
        private readonly ConcurrentDictionary<string, bool> _works = new(StringComparer.Ordinal);

        public bool Saw(string work, TimeSpan within)
        {
            DateTime giveUpAt = DateTime.UtcNow + within;
            while (!_works.ContainsKey(work) && DateTime.UtcNow < giveUpAt)
            {
                Thread.Sleep(10);
            }

            return _works.ContainsKey(work);
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            if (eventData.EventName == "BackgroundWorkFailed" && eventData.Payload is [string work, ..])
            {
                _works[work] = true;
            }
        }
    }
}
