using System;
using System.Runtime.Loader;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Lets a collectible <see cref="AssemblyLoadContext"/> that loaded the library (a plugin's) be collected after its
/// unload. What the library keeps for the whole process is rooted outside the context, and each of those roots held
/// it for good (<c>CollectibleContextUnloadTests</c>, each found by leaving its step out): the meter (in the runtime's
/// list of meters until disposed), the cgroup pressure timer, the collections' sentinel (renewed by its own finalizer
/// at every collection), and the idle ticker's timer, armed for as long as a live pool ticks, which a live pool always
/// does (the shared pools are never disposed); the pinned-array collector's timer for up to half a minute. At the
/// context's <see cref="AssemblyLoadContext.Unloading"/> event these let go. The event source is not such a root (the
/// runtime holds event sources weakly), and goes on reporting for a plugin that still runs.
/// </summary>
/// <remarks>
/// <para>
/// The pools stay usable (the event also comes at process exit, while the plugin's threads may still rent): live pools
/// only stop their idle ticks once nothing waits to be unmapped, so nothing of theirs is let go of by time from then on.
/// Once nothing of the context is reachable, the collector finalizes its pools (the shared ones too), which disposes
/// them: their memory waits out its <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/> (a stale span may still
/// write it), ticked by a timer that holds the context that long, and is unmapped; the context goes at the next
/// collections after that.
/// </para>
/// <para>Nothing here runs for a library loaded in a context that cannot unload (the default one).</para>
/// </remarks>
internal static class ContextUnload
{
    private static int s_watching;
    private static volatile bool s_unloading;

    /// <summary>Whether the context that loaded the library is unloading: nothing process-wide is made or renewed from then on.</summary>
    public static bool IsUnloading => s_unloading;

    /// <summary>Subscribes to the unload of the library's context once, if it is collectible.</summary>
    public static void Watch()
    {
        if (Interlocked.Exchange(ref s_watching, 1) != 0)
        {
            return;
        }

        if (AssemblyLoadContext.GetLoadContext(typeof(ContextUnload).Assembly) is { IsCollectible: true } context)
        {
            // The handler is the context's own, reached from it alone: it keeps nothing alive the context does not.
            context.Unloading += static _ => LetGo();
        }
    }

    /// <summary>
    /// The unload's work, on the thread that called <see cref="AssemblyLoadContext.Unload"/> (or the one ending the
    /// process): each step on its own, reported if it fails, so that one failure neither stops the others nor throws out
    /// of the host's unload.
    /// </summary>
    private static void LetGo()
    {
        s_unloading = true;
        Step("stopping the memory-pressure watch for an unload", MemoryPressureWatcher.StopForUnload);
        Step("disarming the pinned-array collector for an unload", PinnedMemoryCollector.StopForUnload);
        Step("disposing the meter for an unload", PoolMetrics.DisposeMeter);
        Step("pausing the pools' idle ticks for an unload", static () =>
        {
            foreach (IReclaimablePool pool in PoolMetrics.LivePools())
            {
                pool.PauseForUnload();
            }
        });
    }

    private static void Step(string work, Action step)
    {
        try
        {
            step();
        }
        catch (Exception error)
        {
            BackgroundFailures.Report(work, error);
        }
    }
}
