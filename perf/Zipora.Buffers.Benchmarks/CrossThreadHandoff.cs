using System;
using System.Collections.Concurrent;
using System.Threading;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The Pipe pattern: this thread rents and writes, a reader thread gives each buffer back, at most 32 in flight. Both
/// threads spin without ever sleeping, so the time measured is the pools' and the queue's, not the scheduler's.
/// </summary>
public static class CrossThreadHandoff
{
    private const int InFlight = 32;

    public static void Run<T>(int operations, Func<T> rentAndWrite, Action<T> giveBack)
        where T : class
    {
        var handoff = new ConcurrentQueue<T>();
        int inFlight = 0;
        var reader = new Thread(() =>
        {
            int given = 0;
            var spinner = new SpinWait();
            while (given < operations)
            {
                if (handoff.TryDequeue(out T? buffer))
                {
                    giveBack(buffer);
                    Interlocked.Decrement(ref inFlight);
                    given++;
                }
                else
                {
                    spinner.SpinOnce(sleep1Threshold: -1);
                }
            }
        });
        reader.Start();
        var wait = new SpinWait();
        for (int i = 0; i < operations; i++)
        {
            while (Volatile.Read(ref inFlight) >= InFlight)
            {
                wait.SpinOnce(sleep1Threshold: -1);
            }

            T buffer = rentAndWrite();
            Interlocked.Increment(ref inFlight);
            handoff.Enqueue(buffer);
        }

        reader.Join();
    }
}
