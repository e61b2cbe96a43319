using System;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Runs something a process has never run with the GC heap full but for a few bytes, more at each attempt until it goes
/// through: every attempt before may throw only <see cref="OutOfMemoryException"/>, and at least one must have met the
/// full heap. For a child at its heap limit (<see cref="IsolatedProcess.RunsElsewhereAtHeapLimit"/>); what it ran for
/// the first time then has to work once there is room again, which the caller checks.
/// </summary>
internal static class FirstRunSweep
{
    private const int FullHeapProbe = 8 * 1024;

    /// <summary>Sweeps the headroom from 0 by <paramref name="step"/> bytes up to <paramref name="most"/>; what it saw, to report.</summary>
    public static string AtTheHeapLimit(Action firstRun, int step, int most, string what)
    {
        var filler = new List<byte[]>(400_000);
        int attempts = 0;
        int fullAttempts = 0;
        int headroom = 0;
        Exception? atTheLimit = null;
        for (; headroom <= most; headroom += step)
        {
            List<byte[]>? reserve = null;
            atTheLimit = HeapFiller.ThrownOnAFreshThread(
                withRoom: () =>
                {
                    reserve = HeapFiller.Reserve(headroom);
                    GC.Collect();
                },
                atTheLimit: () =>
                {
                    // The reserve's room comes free only below.
                    fullAttempts += HeapFiller.TopUpUntilFull(filler, FullHeapProbe) ? 1 : 0;
                    reserve!.Clear();
                    firstRun();
                },
                filler);
            filler.Clear();
            GC.Collect();
            attempts++;
            if (atTheLimit is not OutOfMemoryException)
            {
                break;
            }
        }

        // Now and then a fill leaves room a top-up does not take (1 attempt in 4 or so): such an attempt proves less, but
        // the sweep must have met the full heap.
        string sweep = $"{what}: {attempts} attempts, {fullAttempts} with the heap full, the last with {headroom} bytes of headroom";
        TestContext.Current.SendDiagnosticMessage(sweep);
        Assert.True(fullAttempts > 0, $"{sweep}: none had the heap full besides its headroom (no room for {FullHeapProbe} bytes): the test proves nothing");
        Assert.True(atTheLimit is null, $"{sweep}: it threw other than OutOfMemoryException: {atTheLimit}");
        return sweep;
    }
}
