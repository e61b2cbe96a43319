using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A dropped pool's finalizer work walks the caches of threads that exited, whose thread objects may have been
/// finalized by the same collection: asking such a thread object whether it is alive throws, and must not make the
/// pool's disposal throw.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class ThreadLivenessSafetyTests
{
    private static int s_exited;
    private static int s_checked;

    [Fact]
    public void AThreadObjectFinalizedInTheSameCollectionCountsAsExited()
    {
        s_exited = 0;
        s_checked = 0;
        const int Holders = 200;
        DropHoldersOfExitedThreads(Holders);
        for (int i = 0; i < 100 && Volatile.Read(ref s_checked) < Holders; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(10);
        }

        Assert.Equal(Holders, Volatile.Read(ref s_checked));
        Assert.Equal(Holders, Volatile.Read(ref s_exited));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropHoldersOfExitedThreads(int count)
    {
        for (int i = 0; i < count; i++)
        {
            var thread = new Thread(static () => { });
            thread.Start();
            thread.Join();
            _ = new ThreadHolder(thread);
        }
    }

    /// <summary>
    /// Holds a thread object as a pool's cache does; its finalizer queues the question to the thread pool, as a dropped
    /// pool's finalizer queues its disposal, which runs once the thread object's own finalizer has run too.
    /// </summary>
    private sealed class ThreadHolder(Thread thread)
    {
        ~ThreadHolder() => ThreadPool.UnsafeQueueUserWorkItem(static exited =>
        {
            if (ThreadLiveness.HasExited(exited))
            {
                Interlocked.Increment(ref s_exited);
            }

            Interlocked.Increment(ref s_checked);
        }, thread, preferLocal: false);
    }
}
