using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Work the pools run on their own that threw: a tick of the idle clock, its ticker's clock or timer, a trim under
/// memory pressure, the disposal of a pool found unreachable, the wake of a paused idle releaser.
/// </summary>
/// <remarks>
/// That work runs on a timer's callback, the finalizer thread or a thread-pool work item, where an exception nobody
/// catches ends the process, or (a wake) inside a call that has nothing to do with it, such as an owner's dispose;
/// none of it is the caller's, so no caller could handle it either. It is counted, reported
/// as the <c>BackgroundWorkFailed</c> event of the <c>Zipora-Buffers</c> event source, and skipped: the tick, the
/// trim or the wake runs again at its next turn (what it would have given back waits until then; nothing is given
/// back early). Only these entry points catch; the work itself throws as it would anywhere.
/// </remarks>
internal static class BackgroundFailures
{
    private static long s_count;

    /// <summary>Failures reported since the process started (the tests check that their storms leave it unchanged).</summary>
    public static long Count => Interlocked.Read(ref s_count);

    /// <summary>Counts and reports <paramref name="error"/>, thrown by the background <paramref name="work"/>.</summary>
    public static void Report(string work, Exception error)
    {
        Interlocked.Increment(ref s_count);
        if (ZiporaBuffersEventSource.Log.IsEnabled())
        {
            ZiporaBuffersEventSource.Log.BackgroundWorkFailed(work, Describe(error));
        }
    }

    /// <summary>
    /// The exception's text, or its type's name when its text cannot be had: an exception is the user's code (a
    /// <see cref="TimeProvider"/>'s), and a report must not throw where the failure it reports was caught.
    /// </summary>
    private static string Describe(Exception error)
    {
        try
        {
            return error.ToString();
        }
        catch (Exception)
        {
            return $"{error.GetType().FullName} (its description threw)";
        }
    }
}
