using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Work the pools run on their own that threw: a tick of the idle clock, its ticker's clock or timer, a trim under
/// memory pressure, the disposal of a pool found unreachable, the wake of a paused idle releaser.
/// </summary>
/// <remarks>
/// <para>
/// That work runs on a timer's callback, the finalizer thread or a thread-pool work item, where an exception nobody
/// catches ends the process, or (a wake) inside a call that has nothing to do with it, such as an owner's dispose;
/// none of it is the caller's, so no caller could handle it either. It is counted, reported
/// as the <c>BackgroundWorkFailed</c> event of the <c>Zipora-Buffers</c> event source, and skipped: the tick, the
/// trim or the wake runs again at its next turn (what it would have given back waits until then; nothing is given
/// back early). Only these entry points catch; the work itself throws as it would anywhere.
/// </para>
/// <para>
/// The event is written from a thread-pool work item, never on the failing thread: a failure is caught under the
/// pool's locks (the idle ticker's, shared by every pool on one clock; a releaser's; a slab heap's), and an
/// <see cref="System.Diagnostics.Tracing.EventListener"/> runs its code on the thread that writes the event. One that
/// waited there for another thread needing those locks would deadlock the pools, and one that called back into a pool
/// would run in the middle of the ticker's work. The exception's stack trace is taken as it is reported (a provider
/// that throws one instance again rewrites it); its message, the user's code, is read when the event is written.
/// Reports keep their order.
/// </para>
/// </remarks>
internal static class BackgroundFailures
{
    private static readonly ConcurrentQueue<(string Work, Exception Error, string StackTrace)> s_unpublished = new();
    private static long s_count;

    // 1 while a work item is queued or writing s_unpublished's reports: one at a time, so they keep their order.
    private static int s_publishing;

    /// <summary>Failures reported since the process started (the tests check that their storms leave it unchanged).</summary>
    public static long Count => Interlocked.Read(ref s_count);

    /// <summary>Counts <paramref name="error"/>, thrown by the background <paramref name="work"/>, and has it written as an event.</summary>
    public static void Report(string work, Exception error)
    {
        Interlocked.Increment(ref s_count);
        if (!ZiporaBuffersEventSource.Log.IsEnabled())
        {
            return;
        }

        s_unpublished.Enqueue((work, error, StackTraceOf(error)));
        if (Interlocked.Exchange(ref s_publishing, 1) == 0)
        {
            _ = ThreadPool.UnsafeQueueUserWorkItem(static _ => PublishAll(), (object?)null, preferLocal: false);
        }
    }

    private static void PublishAll()
    {
        while (true)
        {
            while (s_unpublished.TryDequeue(out (string Work, Exception Error, string StackTrace) report))
            {
                // EventSource keeps a listener's exception to itself (it is not made with ThrowOnEventWriteErrors).
                ZiporaBuffersEventSource.Log.BackgroundWorkFailed(report.Work, Describe(report.Error, report.StackTrace));
            }

            // A report enqueued after the last dequeue but before this store found the flag set and queued nothing:
            // look again, unless a new work item has taken over since. A full fence: the read of the queue below must
            // not pass the store, or that report would wait for the next failure.
            _ = Interlocked.Exchange(ref s_publishing, 0);
            if (s_unpublished.IsEmpty || Interlocked.Exchange(ref s_publishing, 1) != 0)
            {
                return;
            }
        }
    }

    /// <summary>The stack trace <paramref name="error"/> holds now, read without running any of its code.</summary>
    private static string StackTraceOf(Exception error)
    {
        try
        {
            return new StackTrace(error, fNeedFileInfo: false).ToString();
        }
        catch (Exception)
        {
            return "(its stack trace could not be read)";
        }
    }

    /// <summary>
    /// The exception's type and message, and the stack trace it had when reported. Its message may be the user's code
    /// (a <see cref="TimeProvider"/>'s exception) and a report must not throw: one that cannot be had is said so.
    /// </summary>
    private static string Describe(Exception error, string stackTrace)
    {
        string message;
        try
        {
            message = error.Message;
        }
        catch (Exception)
        {
            message = "(its message threw)";
        }

        return $"{error.GetType().FullName}: {message}{Environment.NewLine}{stackTrace}";
    }
}
