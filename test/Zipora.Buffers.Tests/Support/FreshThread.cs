using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Runs work on a thread of its own and hands back what it threw: a test's worker whose thread-statics and stack are
/// its own (the heap-limit sweeps fill the heap from there), or a step the fault sweep runs on another thread.
/// </summary>
internal static class FreshThread
{
    /// <summary>Runs <paramref name="work"/> on a new thread and waits for it; the exception it threw, or <see langword="null"/>.</summary>
    public static Exception? Run(Action work)
    {
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            try
            {
                work();
            }
            catch (Exception error)
            {
                thrown = error;
            }
        });
        thread.Start();
        thread.Join();
        return thrown;
    }
}
