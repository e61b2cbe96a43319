using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>Fills a process's GC heap to its hard limit, for tests that run out of managed memory on purpose.</summary>
/// <remarks>
/// Those tests run their body in a child process under a GC heap hard limit, and in a collection of their own that runs
/// alone (<see cref="AtTheHeapLimit"/>): a child starved of CPU by the parallel suite spends longer at the limit, where
/// the runtime's own work (a thread-pool thread, a timer) can run out of memory too, outside the pool; and a child whose
/// pool's pressure watch sets off a storm of collections at the limit (1 run in 6 of SlabPressureTrimHeapLimitSafetyTests
/// took 200 s instead of 3; RESULTS section 51) would run past its 5 minutes beside the rest.
/// </remarks>
[CollectionDefinition(AtTheHeapLimit, DisableParallelization = true)]
public sealed class HeapFiller
{
    /// <summary>The collection of the tests that fill a child process's heap.</summary>
    public const string AtTheHeapLimit = "tests at the GC heap limit";

    // The pieces of a reserve: under the large object heap's threshold, so what a reserve frees is small object heap.
    private const int ReservePiece = 16 * 1024;

    private HeapFiller()
    {
    }

    /// <summary>
    /// Arrays of 16 KB or less, allocated one after another, that together take <paramref name="bytes"/>: allocated
    /// before <see cref="Fill(List{byte[]}, int, int)"/> and let go of after it, they leave that much room in one place.
    /// </summary>
    public static List<byte[]> Reserve(int bytes)
    {
        var reserve = new List<byte[]>((bytes / ReservePiece) + 1);
        for (int left = bytes; left > 0; left -= ReservePiece)
        {
            reserve.Add(new byte[Math.Min(left, ReservePiece)]);
        }

        return reserve;
    }

    /// <summary>
    /// Fills the heap into <paramref name="filler"/> with arrays of 4 KB down to 24 bytes, but for
    /// <paramref name="headroom"/> bytes in one place: a <see cref="Reserve"/> allocated first, the garbage collected,
    /// then the fill, then the reserve let go of. So the headroom is all the room there is.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void FillLeaving(List<byte[]> filler, int headroom)
    {
        List<byte[]> reserve = Reserve(headroom);
        GC.Collect();
        Fill(filler, largest: 4096, smallest: 24);
        reserve.Clear();
    }

    /// <summary>
    /// <see cref="FillLeaving"/>, but with the gaps the fill leaves between its arrays closed too, and whether the heap is
    /// full but for the headroom: no room for <paramref name="probe"/> bytes while the reserve is still held.
    /// </summary>
    /// <remarks>
    /// A fill down to 24-byte arrays leaves a gap under 24 bytes here and there. A failing allocation's collection may
    /// compact them into one: then a probe that failed once fits at its second try, and an 8 KB probe fitted after 1 to 7
    /// of 18 plain fills (in one CI run, after five fills running for three headrooms). So the fill is compacted and
    /// filled again, twice, before the probe: none of 252 fills left room for the probe then, beside a busy CPU too.
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static bool FillLeavingUntilFull(List<byte[]> filler, int headroom, int probe)
    {
        List<byte[]> reserve = Reserve(headroom);
        GC.Collect();
        Fill(filler, largest: 4096, smallest: 24);
        for (int pass = 0; pass < 2; pass++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            Fill(filler, largest: 4096, smallest: 24);
        }

        bool full = !HasRoomFor(probe);
        reserve.Clear();
        return full;
    }

    /// <summary>
    /// Runs <paramref name="atTheLimit"/> with the heap full (arrays of 4 KB down to 24 bytes, the calling thread's
    /// allocation context spent), then lets the heap go; returns what it threw for want of memory, if anything. No
    /// reserve is made: even an empty one is garbage a failing allocation's collection would find room in.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static OutOfMemoryException? OutOfMemoryFrom(Action atTheLimit)
    {
        var filler = new List<byte[]>(400_000);
        GC.Collect();
        Fill(filler, largest: 4096, smallest: 24);
        OutOfMemoryException? thrown = null;
        try
        {
            atTheLimit();
        }
        catch (OutOfMemoryException error)
        {
            thrown = error;
        }

        filler.Clear();
        GC.Collect();
        return thrown;
    }

    /// <summary>
    /// Runs <paramref name="withRoom"/>, then fills the heap into <paramref name="filler"/> (unless that is null; with
    /// arrays of <paramref name="largest"/> bytes down to 24, 4 KB leaving the large object heap's free space) and
    /// runs <paramref name="atTheLimit"/>, on a thread that does nothing else, so its own allocation context is spent
    /// too and its thread statics are touched first by the test's calls; what <paramref name="atTheLimit"/> threw.
    /// </summary>
    /// <remarks>
    /// Anything it throws is caught and handed back for the test to judge (an exception left on that thread would end
    /// the process): out of memory, or several segments' errors in one <see cref="AggregateException"/>.
    /// </remarks>
    public static Exception? ThrownOnAFreshThread(Action? withRoom, Action atTheLimit, List<byte[]>? filler, int largest = 1 << 20)
    {
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            // With room: an exception here ends the process, and fails the test.
            withRoom?.Invoke();
            if (filler is not null)
            {
                Fill(filler, largest, smallest: 24);
            }

            try
            {
                atTheLimit();
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

    /// <summary>
    /// Fills the heap into <paramref name="filler"/>, topping up a fill that left room for <paramref name="probe"/> bytes
    /// (1 fill in 5 or so) up to three times; whether it is full now (no room for the probe).
    /// </summary>
    public static bool TopUpUntilFull(List<byte[]> filler, int probe)
    {
        for (int topUp = 0; topUp < 3 && HasRoomFor(probe); topUp++)
        {
            Fill(filler, largest: 1 << 20, smallest: 24);
        }

        return !HasRoomFor(probe);
    }

    /// <summary>Whether an array of <paramref name="bytes"/> still fits in the heap (the probe is let go of at once).</summary>
    public static bool HasRoomFor(int bytes)
    {
        try
        {
            GC.KeepAlive(new byte[bytes]);
            return true;
        }
        catch (OutOfMemoryException)
        {
            return false;
        }
    }

    /// <summary>
    /// Lets a thread that queued thread-pool work end while there is room, and waits for its finalizers: the runtime's
    /// finalizer of a dead thread's work-queue locals makes a generic static the first time it runs, and at the heap
    /// limit that ends the process ("Out of memory.", <c>ThreadPoolWorkQueueThreadLocals.Finalize</c> in the crash
    /// report), whatever the test does. Every child of <see cref="IsolatedProcess.RunsElsewhereAtHeapLimit"/> calls it
    /// before its test.
    /// </summary>
    public static void LetTheRuntimeFinalizeAThreadPoolUser()
    {
        using var done = new ManualResetEventSlim();
        var user = new Thread(() => ThreadPool.UnsafeQueueUserWorkItem(static done => done.Set(), done, preferLocal: true));
        user.Start();
        user.Join();
        done.Wait();
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>
    /// Has the thread pool make, while there is room, as many workers as it runs at once (its minimum, the thread goal
    /// when the gate thread's starvation detection is off), and waits until it has: the children of
    /// <see cref="IsolatedProcess.RunsElsewhereAtHeapLimit"/> keep every worker made
    /// (<c>DOTNET_ThreadPool_ThreadsToKeepAlive=-1</c>), so work queued at the limit wakes one of them. An idle worker
    /// otherwise ends after 20 seconds, and the next work item queued makes a thread: queued by the runtime's timer
    /// thread (a timer due), that ends the process at the limit ("Out of memory.", <c>CreateWorkerThread</c> under
    /// <c>TimerQueue.TimerThread</c> in the crash report of a child that had run for 50 seconds under CPU load).
    /// </summary>
    public static void StartTheThreadPoolsWorkers()
    {
        // Work items held until the pool has its minimum of threads: each one queued while the others are held makes
        // a worker (up to the goal). The test itself may run on a worker, which counts; so the items are queued one
        // at a time until the count is reached, not a fixed number of them at once (that would wait for ever).
        ThreadPool.GetMinThreads(out int workers, out _);
        var release = new ManualResetEventSlim();
        var finished = new CountdownEvent(1);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (ThreadPool.ThreadCount < workers && DateTime.UtcNow < deadline)
        {
            int before = ThreadPool.ThreadCount;
            finished.AddCount();
            ThreadPool.UnsafeQueueUserWorkItem(
                _ =>
                {
                    release.Wait();
                    finished.Signal();
                },
                null);
            SpinWait.SpinUntil(() => ThreadPool.ThreadCount > before, TimeSpan.FromSeconds(1));
        }

        int made = ThreadPool.ThreadCount;
        release.Set();
        finished.Signal();
        finished.Wait();
        Assert.True(made >= workers, $"the thread pool made {made} workers in 30 seconds, fewer than its minimum of {workers}");
    }

    /// <summary>
    /// Allocates arrays from <paramref name="largest"/> down to <paramref name="smallest"/> bytes (of 1 MB, 64 KB, 4 KB,
    /// 512, 64 and 24) until none more fits, and holds them: the calling thread's allocation context is spent too, so
    /// its next allocation of any size throws. Arrays under 85,000 bytes fill the small object heap, where dropping
    /// some makes room for small allocations again.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static List<byte[]> Fill(int largest = 1 << 20, int smallest = 24)
    {
        var filler = new List<byte[]>(400_000);
        Fill(filler, largest, smallest);
        return filler;
    }

    /// <summary>
    /// <see cref="Fill(int, int)"/> into a list made earlier (up to its capacity), for a test that fills the heap again
    /// and again: a list made anew each time may itself no longer fit.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Fill(List<byte[]> filler, int largest, int smallest)
    {
        foreach (int size in new[] { 1 << 20, 64 * 1024, 4096, 512, 64, 24 })
        {
            if (size > largest)
            {
                continue;
            }

            if (size < smallest)
            {
                break;
            }

            try
            {
                while (filler.Count < filler.Capacity)
                {
                    filler.Add(new byte[size]);
                }
            }
            catch (OutOfMemoryException)
            {
                // This size no longer fits: the next, smaller one fills the gaps it left.
            }
        }
    }

    /// <summary>
    /// Fills what a filler's smallest arrays leave: the smallest objects there are, into <paramref name="crumbs"/>, until
    /// none fits, so the next allocation of any size finds no room.
    /// </summary>
    public static void FillTheLastHoles(object[] crumbs)
    {
        try
        {
            for (int i = 0; i < crumbs.Length; i++)
            {
                crumbs[i] = new object();
            }
        }
        catch (OutOfMemoryException)
        {
            // No room left for the smallest object: the heap is full.
        }
    }
}
