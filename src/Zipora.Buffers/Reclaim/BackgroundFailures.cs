using System;
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
/// The event is written off the failing thread (see <see cref="EventsOffTheCaller"/>): a failure is caught under the
/// pools' locks. The exception's stack trace is taken as it is reported (a provider that throws one instance again
/// rewrites it); its message, the user's code, is read when the event is written.
/// </para>
/// </remarks>
internal static class BackgroundFailures
{
    private static long s_count;
    private static string? s_lastWork;
    private static Exception? s_lastError;

    /// <summary>Failures reported since the process started (the tests check that their storms leave it unchanged).</summary>
    public static long Count => Interlocked.Read(ref s_count);

    /// <summary>
    /// The work that failed last and what it threw, kept without allocating (a failure at the GC heap limit must still
    /// be told), so that a failure nobody listened for can be named after the fact.
    /// </summary>
    public static (string? Work, Exception? Error) Last => (Volatile.Read(ref s_lastWork), Volatile.Read(ref s_lastError));

    /// <summary>Counts <paramref name="error"/>, thrown by the background <paramref name="work"/>, and has it written as an event.</summary>
    /// <remarks>
    /// Never throws, as it runs where nothing may (a finalizer, a timer's callback): out of managed memory, where the
    /// work most often fails, the failure is counted and only its event is lost.
    /// </remarks>
    public static void Report(string work, Exception error)
    {
        Volatile.Write(ref s_lastWork, work);
        Volatile.Write(ref s_lastError, error);
        Interlocked.Increment(ref s_count);
        if (!ZiporaBuffersEventSource.Log.IsEnabled())
        {
            return;
        }

        try
        {
            PostEvent(work, error);
        }
        catch (OutOfMemoryException)
        {
            EventsOffTheCaller.CountLost();
        }
    }

    /// <summary>Has the event written off this thread, with the stack trace <paramref name="error"/> holds now.</summary>
    /// <remarks>
    /// A method of its own because the lambda captures the parameters: the compiler makes the closure at the entry of
    /// the method whose parameters it captures. In <see cref="Report"/> that was before its guard, and at the GC heap
    /// limit the report itself threw out of a timer's callback (RegionReleaseHeapLimitSafetyTests' timer test, one run in two under load).
    /// </remarks>
    private static void PostEvent(string work, Exception error)
    {
        string stackTrace = StackTraceOf(error);
        EventsOffTheCaller.Post(() => ZiporaBuffersEventSource.Log.BackgroundWorkFailed(work, Describe(error, stackTrace)));
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
