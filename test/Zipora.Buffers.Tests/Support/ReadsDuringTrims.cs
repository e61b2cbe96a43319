using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Reads a quiet pool's statistics while a thread of its own trims it, round after round: the pool trims on its own (the
/// idle tick, the pressure watch after a collection, a cap), so a reader cannot avoid meeting a trim.
/// </summary>
internal static class ReadsDuringTrims
{
    /// <summary>
    /// Runs rounds of <paramref name="refill"/> (on the calling thread), then one <paramref name="trim"/> on the
    /// trimming thread, with <paramref name="wrongRead"/> called until that trim ends; stops at the first read that
    /// names what is wrong, or once 5,000 reads met a trim, or after 2 seconds. Returns that read's text (null if none)
    /// and how many reads met a trim.
    /// </summary>
    public static (string? Wrong, int ReadsDuringATrim) Run(Action refill, Action trim, Func<string?> wrongRead)
    {
        using var trimNow = new SemaphoreSlim(0);
        using var trimmed = new SemaphoreSlim(0);
        int trimming = 0;
        bool stop = false;
        var trimmer = new Thread(() =>
        {
            while (true)
            {
                trimNow.Wait();
                if (Volatile.Read(ref stop))
                {
                    return;
                }

                Volatile.Write(ref trimming, 1);
                trim();
                Volatile.Write(ref trimming, 0);
                trimmed.Release();
            }
        });
        trimmer.Start();

        string? wrong = null;
        int readsDuringATrim = 0;
        var watch = Stopwatch.StartNew();
        try
        {
            while (wrong is null && readsDuringATrim < 5_000 && watch.Elapsed.TotalSeconds < 2)
            {
                refill();
                trimNow.Release();
                do
                {
                    wrong = wrongRead();
                    readsDuringATrim += Volatile.Read(ref trimming);
                }
                while (wrong is null && !trimmed.Wait(0));
            }
        }
        finally
        {
            // A trim still running (the read that found it wrong did not wait for it) ends before the semaphores go.
            Volatile.Write(ref stop, true);
            trimNow.Release();
            trimmer.Join();
        }

        return (wrong, readsDuringATrim);
    }
}
