using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Threads kept alive between rounds of work, each running the round's work once when asked: what a thread keeps for
/// itself in a pool (a parked block, a thread cache) stays there between rounds, and no exit hands it back.
/// </summary>
internal sealed class KeptThreads : IDisposable
{
    private readonly List<Thread> _threads = [];
    private readonly List<SemaphoreSlim> _go = [];
    private readonly SemaphoreSlim _done = new(0);
    private Action<int>? _work;
    private Exception? _thrown;
    private bool _stop;

    public KeptThreads(int count)
    {
        for (int index = 0; index < count; index++)
        {
            var go = new SemaphoreSlim(0);
            int threadIndex = index;
            var thread = new Thread(() => Serve(threadIndex, go)) { IsBackground = true };
            _go.Add(go);
            _threads.Add(thread);
            thread.Start();
        }
    }

    /// <summary>Runs <paramref name="work"/> once on each thread (given its index) and waits for all; rethrows what one threw.</summary>
    public void RunOnEach(Action<int> work)
    {
        Volatile.Write(ref _work, work);
        _go.ForEach(static go => go.Release());
        for (int index = 0; index < _threads.Count; index++)
        {
            _done.Wait();
        }

        if (Interlocked.Exchange(ref _thrown, null) is { } thrown)
        {
            throw new InvalidOperationException("a kept thread's work threw", thrown);
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _stop, true);
        _go.ForEach(static go => go.Release());
        _threads.ForEach(static thread => thread.Join());
        _go.ForEach(static go => go.Dispose());
        _done.Dispose();
    }

    private void Serve(int index, SemaphoreSlim go)
    {
        while (true)
        {
            go.Wait();
            if (Volatile.Read(ref _stop))
            {
                return;
            }

            try
            {
                Volatile.Read(ref _work)!(index);
            }
            catch (Exception error)
            {
                Interlocked.CompareExchange(ref _thrown, error, null);
            }

            _done.Release();
        }
    }
}
