using System;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>The two trims a pool gets from outside: a caller's <c>Trim()</c>, and the pressure watch's.</summary>
internal static class PoolTrims
{
    /// <summary>Runs the pressure watch's trim when <paramref name="underPressure"/>, else <c>Trim()</c>.</summary>
    public static void Run(IReclaimablePool pool, bool underPressure)
    {
        if (underPressure)
        {
            pool.TrimUnderPressure();
        }
        else
        {
            pool.Trim();
        }
    }

    /// <summary>
    /// Runs <paramref name="withRoom"/> on a fresh thread, then fills the heap into <paramref name="filler"/> and its
    /// last holes into <paramref name="crumbs"/> and trims <paramref name="pool"/> there (see <see cref="Run"/>); then
    /// lets the heap go. What the trim threw, if anything.
    /// </summary>
    public static Exception? RunAtTheHeapLimit(IReclaimablePool pool, bool underPressure, Action withRoom, List<byte[]> filler, object[] crumbs)
    {
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            withRoom,
            () =>
            {
                HeapFiller.FillTheLastHoles(crumbs);
                Run(pool, underPressure);
            },
            filler);
        filler.Clear();
        Array.Clear(crumbs);
        GC.Collect();
        return thrown;
    }
}
