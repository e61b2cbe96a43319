using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// How background failures are published (attack round 10, on commit eb9938e): counted on the failing thread, written
/// as <c>BackgroundWorkFailed</c> events later from one thread-pool work item at a time. The reports must all come out,
/// once each, in order, unstranded, and say what was thrown when it was thrown. The reports here are made directly
/// (work names starting "attack10"), so leftovers of other tests cannot be mistaken for them. Runs alone: it provokes
/// background failures and listens to the pools' event source.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class FailureReportPublishingSafetyTests
{
    [Fact]
    public void ReportsMadeOnManyThreadsAtOnceAreAllWrittenOnceEachInEachThreadsOrder()
    {
        const int Threads = 4;
        const int PerThread = 5_000;
        using var listener = new ReportListener("attack10 storm ");
        var workers = new Thread[Threads];
        using var go = new ManualResetEventSlim();
        try
        {
            for (int t = 0; t < Threads; t++)
            {
                string work = $"attack10 storm {t}";
                workers[t] = new Thread(() =>
                {
                    go.Wait();
                    for (int i = 0; i < PerThread; i++)
                    {
                        BackgroundFailures.Report(work, new InvalidOperationException(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                    }
                });
                workers[t].Start();
            }

            go.Set();
            foreach (Thread worker in workers)
            {
                Assert.True(worker.Join(TimeSpan.FromSeconds(60)), "a reporting thread did not end within 60 s: Report blocked");
            }
        }
        finally
        {
            BackgroundFailureWatch.Provoked(Threads * PerThread);
        }

        bool allWritten = SpinWait.SpinUntil(() => listener.Seen >= Threads * PerThread, TimeSpan.FromSeconds(60));
        Assert.True(allWritten, $"{listener.Seen} of {Threads * PerThread} reports were written within 60 s: the others were lost or stranded in the queue");
        Thread.Sleep(200);
        Assert.True(listener.Seen == Threads * PerThread, $"{listener.Seen} events were written for {Threads * PerThread} reports: some were written twice");
        for (int t = 0; t < Threads; t++)
        {
            int[] order = [.. listener.Reports.Where(r => r.Work == $"attack10 storm {t}").Select(r => int.Parse(r.Error.Split(": ")[1].Split(Environment.NewLine)[0], System.Globalization.CultureInfo.InvariantCulture))];
            Assert.True(order.SequenceEqual(Enumerable.Range(0, PerThread)), $"thread {t}'s reports were written out of order, lost or repeated: the first bad one at position {order.Zip(Enumerable.Range(0, PerThread)).TakeWhile(p => p.First == p.Second).Count()}");
        }
    }

    [Fact]
    public void AReportMadeJustAsThePublisherStopsIsNotStrandedUntilTheNextFailure()
    {
        using var listener = new ReportListener("attack10 strand");
        var error = new InvalidOperationException("attack10");
        long made = 0;
        var random = new Random(10);
        var elapsed = Stopwatch.StartNew();
        try
        {
            // Each round: a report that starts the publisher; as soon as its event is written (the publisher about to
            // look at the queue a last time and clear its flag), one more report, a few spins later or none. That last
            // one must be written without any further report to push it out.
            while (elapsed.Elapsed < TimeSpan.FromSeconds(8))
            {
                BackgroundFailures.Report("attack10 strand first", error);
                made++;
                long expected = made;
                Assert.True(SpinWait.SpinUntil(() => listener.Seen >= expected, TimeSpan.FromSeconds(30)), $"a report made while no publisher ran was not written within 30 s ({listener.Seen} of {expected})");
                int spins = random.Next(0, 300);
                for (int i = 0; i < spins; i++)
                {
                    Thread.SpinWait(1);
                }

                BackgroundFailures.Report("attack10 strand last", error);
                made++;
                expected = made;
                bool written = SpinWait.SpinUntil(() => listener.Seen >= expected, TimeSpan.FromSeconds(10));
                Assert.True(written, $"after {made / 2} rounds, a report made as the publisher finished was never written ({listener.Seen} of {expected} within 10 s): BackgroundFailures.PublishAll cleared s_publishing with a plain Volatile.Write and then read s_unpublished.IsEmpty, which the processor may do first (store-load reordering); the report was enqueued in between and its Report saw the flag still set, so it waits in the queue for the next failure, maybe forever");
            }
        }
        finally
        {
            BackgroundFailureWatch.Provoked(made);
        }
    }

    [Fact]
    public void AReportDescribesTheExceptionAsItWasWhenItWasReportedNotAsItIsWhenTheEventIsWritten()
    {
        using var listener = new ReportListener("attack10 describe", blockOn: "attack10 describe blocker");
        long made = 0;
        try
        {
            // Holds the publisher inside the listener, so the next reports wait in the queue, as they do whenever the
            // thread pool is slow to run the work item.
            BackgroundFailures.Report("attack10 describe blocker", new InvalidOperationException("blocker"));
            made++;
            Assert.True(listener.Blocking.Wait(TimeSpan.FromSeconds(30)), "the publisher never reached the listener");

            // A provider that throws one cached exception (as some keep a static instance) from two places: each
            // throw rewrites its stack trace.
            var cached = new InvalidOperationException("attack10 cached");
            try
            {
                ThrowFromTheClockRead(cached);
            }
            catch (InvalidOperationException error)
            {
                BackgroundFailures.Report("attack10 describe first", error);
                made++;
            }

            try
            {
                ThrowFromTheTimerChange(cached);
            }
            catch (InvalidOperationException error)
            {
                BackgroundFailures.Report("attack10 describe second", error);
                made++;
            }
        }
        finally
        {
            listener.Release.Set();
            BackgroundFailureWatch.Provoked(made);
        }

        Assert.True(SpinWait.SpinUntil(() => listener.Seen >= 3, TimeSpan.FromSeconds(30)), "the reports were not written within 30 s");
        string first = listener.Reports.Single(r => r.Work == "attack10 describe first").Error;
        Assert.True(
            first.Contains(nameof(ThrowFromTheClockRead), StringComparison.Ordinal) && !first.Contains(nameof(ThrowFromTheTimerChange), StringComparison.Ordinal),
            $"the report of the first failure describes where the exception was thrown later, not where it was thrown when reported: BackgroundFailures.Report queues the exception object and Describe calls its ToString only when the work item writes the event, by when the provider may have thrown it again (a rethrow rewrites the stack trace). Its description: {first}");
    }

    [Fact]
    public void AListenerThatThrowsOrDisposesItselfOnAReportKeepsNoReportFromAnotherListener()
    {
        const int Reports = 200;
        using var recorder = new ReportListener("attack10 rude");
        var thrower = new RudeListener(disposeItself: false);
        var quitter = new RudeListener(disposeItself: true);
        try
        {
            for (int i = 0; i < Reports; i++)
            {
                BackgroundFailures.Report("attack10 rude", new InvalidOperationException(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            }
        }
        finally
        {
            BackgroundFailureWatch.Provoked(Reports);
        }

        bool allWritten = SpinWait.SpinUntil(() => recorder.Seen >= Reports, TimeSpan.FromSeconds(30));
        thrower.Dispose();
        quitter.Dispose();
        Assert.True(allWritten, $"{recorder.Seen} of {Reports} reports reached a well-behaved listener beside one that throws on every event and one that disposes itself on its first: the publisher stopped");
        Assert.True(thrower.Seen > 0 && quitter.Seen > 0, "the rude listeners saw nothing: the attack did not run");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowFromTheClockRead(Exception cached) => throw cached;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowFromTheTimerChange(Exception cached) => throw cached;

    /// <summary>Records the <c>BackgroundWorkFailed</c> events whose work starts with a prefix; may hold the publisher on one.</summary>
    private sealed class ReportListener(string prefix, string? blockOn = null) : PoolEventListener
    {
        private readonly ConcurrentQueue<(string Work, string Error)> _reports = new();
        private long _seen;

        public ManualResetEventSlim Blocking { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public long Seen => Interlocked.Read(ref _seen);

        public IEnumerable<(string Work, string Error)> Reports => _reports;

        public override void Dispose()
        {
            Release.Set();
            base.Dispose();
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            if (eventData.EventName != "BackgroundWorkFailed" || eventData.Payload is not [string work, string error, ..] || !work.StartsWith(prefix ?? string.Empty, StringComparison.Ordinal))
            {
                return;
            }

            _reports.Enqueue((work, error));
            Interlocked.Increment(ref _seen);
            if (work == blockOn)
            {
                Blocking.Set();
                Release.Wait(TimeSpan.FromSeconds(60));
            }
        }
    }

    /// <summary>Throws on every <c>BackgroundWorkFailed</c> event, or disposes itself on its first.</summary>
    private sealed class RudeListener(bool disposeItself) : PoolEventListener
    {
        private long _seen;

        public long Seen => Interlocked.Read(ref _seen);

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            if (eventData.EventName != "BackgroundWorkFailed")
            {
                return;
            }

            Interlocked.Increment(ref _seen);
            if (disposeItself)
            {
                Dispose();
                return;
            }

            throw new InvalidOperationException("a listener that throws on every event");
        }
    }
}
