using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Waits for the background work a test at the GC heap limit sets off to finish: the finalizer thread's queue (the
/// memory pressure watch's sentinel runs there at every collection), the trim passes that watch queues and its cgroup
/// timer's reads of the pressure.
/// </summary>
/// <remarks>
/// A failure is counted when the work that threw catches it, not when it throws. At the heap limit the watch's
/// sentinel fails reading the memory pressure at most collections (7 to 46 times per run of the first-touch test, the
/// last failure of every run); a finalizer thread that threw while the heap was full and was not run again before the
/// test counted had its failure land on the whole run as one nobody provoked (CI, once, under load). The cgroup timer's
/// reads of the pressure count as passes too. The pools' own timers are not waited for: the tests that provoke failures
/// run their pools on fake clocks, whose ticks run on the test's thread.
/// </remarks>
internal static class BackgroundWork
{
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(30);

    /// <summary>Returns once the pending finalizers have run and no trim pass is queued or running.</summary>
    public static void WaitUntilQuiet()
    {
        GC.WaitForPendingFinalizers();
        bool quiet = SpinWait.SpinUntil(static () => !MemoryPressureWatcher.IsPassInFlight, s_patience);
        Assert.True(quiet, $"a trim pass under memory pressure was still queued or running {s_patience.TotalSeconds} s after the test");

        // A pass's trims may have left finalizable work behind.
        GC.WaitForPendingFinalizers();
    }
}
