using System;
using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Gives idle memory back from every live pool when memory runs short. Checked at garbage collections (one
/// process-wide sentinel object, replaced by a fresh one each time it is finalized, so its finalizer runs at every
/// collection, gen0 ones included) and, in a memory cgroup (limited at start-up or later), on a timer: a heap growing
/// by large objects collects rarely, and native memory not at all, while the kernel's OOM killer acts the moment the
/// cgroup reaches its limit. Each pool's own ticker checks too.
/// </summary>
/// <remarks>
/// The timer reads the cgroup's charge ten times a second close to the limit, once a second far from it or with no
/// limit (<see cref="CgroupWatchPeriod"/>): a few small files per cgroup level, some tens of microseconds, and a
/// timer's wake. At 200 MB/s of growth the short period leaves the pools 20 MB of warning per reading.
/// </remarks>
internal sealed class MemoryPressureWatcher
{
    // At most one trim pass per this many milliseconds while the pressure lasts: each pass gives back all there is.
    private const long RestMilliseconds = 1_000;

    private static int s_started;

    // Held here so the timer lives as long as the process: nothing else references it.
    private static ITimer? s_cgroupTimer;

    // Held while the cgroup timer is made (pools made at once on two threads make one) and while its period changes.
    private static readonly object s_timerLock = new();
    private static long s_lastPass = long.MinValue / 2;

    // Passes queued or running: a pass that failed at the GC heap limit is counted when it is caught, which may be
    // well after the moment it threw (tests wait for this to fall to zero before they count what they provoked).
    private static int s_passesInFlight;

    // Cgroup timer ticks lost to a method compiled at its first call at the GC heap limit: counted without a call (one
    // could fail the same way), for a dump or a debugger to show.
    private static long s_ticksLost;

    // The timer's period now, as the last reading set it (see CgroupWatchPeriod).
    private static int s_periodMilliseconds = CgroupWatchPeriod.LongestMilliseconds;

    // The queued pass, made with this type's statics when the first pool starts the watch: a lambda made at its first
    // use makes the compiler's class for the lambdas first, and that class's initializer failed at the GC heap limit,
    // in the sentinel's finalizer (a TypeInitializationException, which ended the process: SegmentedFirstTouchSafetyTests
    // on a CI run, once the heap's share was read from the bytes allocated since the last collection).
    private static readonly Action<object?> s_pass = static _ => TrimEveryPoolCounted();

    private MemoryPressureWatcher()
    {
    }

    ~MemoryPressureWatcher()
    {
        // Not renewed once the library's context unloads: a sentinel renewed at every collection keeps the context
        // reachable at every collection (see ContextUnload).
        if (Environment.HasShutdownStarted || ContextUnload.IsUnloading)
        {
            return;
        }

        // Nothing may leave a finalizer: an exception there ends the process. Out of managed memory (a process at its
        // GC heap limit, which is when this matters most), the pass is skipped and this sentinel stays registered in
        // place of a new one (re-registering allocates nothing), so the watch goes on. The same for a type first used
        // here whose initializer ran out of it (as the queued pass's lambdas' class once did): that type stays broken,
        // but the process lives, and what does not need it (the pools' own ticks) goes on.
        try
        {
            if (IsPassDue())
            {
                // Not on the finalizer thread: trimming takes locks and makes system calls.
                QueuePass();
            }

            _ = new MemoryPressureWatcher();
        }
        catch (Exception error) when (error is OutOfMemoryException or TypeInitializationException { InnerException: OutOfMemoryException })
        {
            GC.ReRegisterForFinalize(this);
        }
    }

    /// <summary>
    /// Starts the sentinel once per process and, in a memory cgroup, the timer (tried again by the next pool made when
    /// the runtime could not start it). Pools are found through the meter's list of live pools, so nothing here keeps
    /// a pool alive.
    /// </summary>
    public static void Start()
    {
        if (Volatile.Read(ref s_started) == 0 && Interlocked.Exchange(ref s_started, 1) == 0)
        {
            // The statics the background work reports through, and those a trim or a dispose reads, which a process may
            // first run at the GC heap limit, were made with the pool's first step (LibraryStatics).
            try
            {
                _ = new MemoryPressureWatcher();
                ContextUnload.Watch();
            }
            catch (OutOfMemoryException)
            {
                // The pool being made fails with it; the next one made starts the watch, which was otherwise never started.
                Volatile.Write(ref s_started, 0);
                throw;
            }
        }

        // Not only where a limit was found at start-up: one set on the running container later is as deadly; with no
        // limit the timer reads once a second (CgroupWatchPeriod) and finds no pressure.
        if (MemoryBudget.Current.HasCgroup && Volatile.Read(ref s_cgroupTimer) is null)
        {
            StartCgroupTimer();
        }
    }

    /// <summary>
    /// Starts the timer that reads the cgroup's charge. Where the runtime cannot start its timer thread (a process at
    /// its thread limit, or out of managed memory) the pool is made without it, as it was outside a limited cgroup:
    /// the collections' sentinel and every pool's own ticks still read the pressure (LockedMemoryLimitSafetyTests).
    /// </summary>
    private static void StartCgroupTimer()
    {
        lock (s_timerLock)
        {
            if (s_cgroupTimer is not null || ContextUnload.IsUnloading)
            {
                return;
            }

            try
            {
                // Run once here, where a pool is being made, so that the callback and what it always calls are compiled
                // before a tick can come at the GC heap limit: a method compiled at its first call there throws, and
                // the first tick's did, out of the timer's callback, ending the process (DiagnosticReturnHeapLimitSafetyTests,
                // 4 of 10 runs, once the timer ran in every memory cgroup).
                OnCgroupTick(null);
                TimeSpan period = TimeSpan.FromMilliseconds(s_periodMilliseconds);

                // Without the calling thread's execution context: a timer made with it carries the first pool's maker's
                // AsyncLocals for the process's life (CgroupTimerExecutionContextTests), and each tick restores it,
                // which on a fresh thread-pool thread at the GC heap limit failed before the callback was reached.
                Volatile.Write(ref s_cgroupTimer, IdleTicker.WithoutExecutionContext(() => TimeProvider.System.CreateTimer(OnCgroupTick, null, period, period)));
            }
            catch (OutOfMemoryException error)
            {
                BackgroundFailures.Report("the cgroup pressure timer's start", error);
            }
        }
    }

    /// <summary>
    /// Stops the cgroup timer for the unload of the library's context: a periodic timer is rooted in the runtime's timer
    /// queue, and its callback holds the context (see <see cref="ContextUnload"/>). The sentinel stops at its next
    /// finalization, which <see cref="ContextUnload.IsUnloading"/> keeps from making another.
    /// </summary>
    public static void StopForUnload()
    {
        lock (s_timerLock)
        {
            s_cgroupTimer?.Dispose();
        }
    }

    /// <summary>Whether the cgroup's charge is being read on the timer (tests and reports).</summary>
    internal static bool IsWatchingCgroup => Volatile.Read(ref s_cgroupTimer) is not null;

    /// <summary>Whether a trim pass is queued or running, or the cgroup's timer is reading the pressure (tests wait for the work they set off).</summary>
    internal static bool IsPassInFlight => Volatile.Read(ref s_passesInFlight) > 0;

    private static void QueuePass()
    {
        Interlocked.Increment(ref s_passesInFlight);
        try
        {
            ThreadPool.UnsafeQueueUserWorkItem(s_pass, null, preferLocal: false);
        }
        catch (OutOfMemoryException)
        {
            // The item may have been queued before the runtime ran out (starting a thread for it): then the pass runs
            // and counts itself out as well, and the count must not go below zero for it.
            PassLeft();
            throw;
        }
    }

    /// <summary>
    /// The cgroup timer's callback, where an exception ends the process. What it calls guards its own failures; this
    /// catches what a callee's first compilation at the GC heap limit throws before its guard, and counts it without
    /// a call (anything called here could fail the same way).
    /// </summary>
    private static void OnCgroupTick(object? state)
    {
        try
        {
            TrimEveryPoolIfDue();
            SetPeriodFromTheLastReading();
        }
        catch (OutOfMemoryException)
        {
            Interlocked.Increment(ref s_ticksLost);
        }
    }

    /// <summary>Reads again soon close to the limit, seldom far from it or with none (see <see cref="CgroupWatchPeriod"/>).</summary>
    private static void SetPeriodFromTheLastReading()
    {
        (long usage, long limit) = MemoryBudget.Current.CgroupCharge();
        int period = CgroupWatchPeriod.NextMilliseconds(usage, limit);

        // The period and the timer change together: two ticks running at once (a starved thread pool) could otherwise
        // apply their changes in the other order and leave the timer at a period the field no longer shows, for good.
        lock (s_timerLock)
        {
            if (s_periodMilliseconds != period)
            {
                s_periodMilliseconds = period;
                TimeSpan next = TimeSpan.FromMilliseconds(period);
                _ = s_cgroupTimer?.Change(next, next);
            }
        }
    }

    private static void TrimEveryPoolIfDue()
    {
        // Counted from before the pressure is read, which allocates and may fail: the read is part of the pass.
        Interlocked.Increment(ref s_passesInFlight);
        try
        {
            if (IsPassDue())
            {
                TrimEveryPool();
            }
        }
        finally
        {
            PassLeft();
        }
    }

    private static void TrimEveryPoolCounted()
    {
        try
        {
            TrimEveryPool();
        }
        catch (Exception error)
        {
            // A work item, where an exception ends the process: whatever the pass met (a type first used here whose
            // initializer ran out of managed memory, as PinnedMemoryCollector's once did) is reported, and the next
            // pass tries again (OwnerAllocationHeapLimitSafetyTests' child died of it on a CI run).
            BackgroundFailures.Report("a trim under memory pressure", error);
        }
        finally
        {
            PassLeft();
        }
    }

    private static void PassLeft()
    {
        int count;
        do
        {
            count = Volatile.Read(ref s_passesInFlight);
        }
        while (count > 0 && Interlocked.CompareExchange(ref s_passesInFlight, count - 1, count) != count);
    }

    /// <summary>
    /// Whether memory runs short and the last pass was long enough ago; marks a new pass when so. False, reported, when
    /// reading the pressure threw: this runs on the finalizer thread and a timer's callback.
    /// </summary>
    private static bool IsPassDue()
    {
        try
        {
            return IsPassDueUnguarded();
        }
        catch (Exception error)
        {
            BackgroundFailures.Report("reading the memory pressure", error);
            return false;
        }
    }

    private static bool IsPassDueUnguarded()
    {
        long now = Environment.TickCount64;
        if (now - Volatile.Read(ref s_lastPass) < RestMilliseconds || !MemoryBudget.Current.IsUnderPressure(managedMemory: true))
        {
            return false;
        }

        Volatile.Write(ref s_lastPass, now);
        return true;
    }

    private static void TrimEveryPool()
    {
        // On a timer's callback or a work item, where an exception ends the process; the list is made when memory runs
        // short, so out of it the pass is reported and skipped (the next one tries again).
        List<IReclaimablePool> pools;
        try
        {
            pools = PoolMetrics.LivePools();
        }
        catch (OutOfMemoryException error)
        {
            BackgroundFailures.Report("listing the pools to trim under memory pressure", error);
            return;
        }

        foreach (IReclaimablePool pool in pools)
        {
            try
            {
                // A heap near its limit (with memory otherwise plentiful) is relieved by pools of managed memory only.
                if (!MemoryBudget.Current.IsUnderPressureFor(pool))
                {
                    continue;
                }

                pool.TrimUnderPressure();
            }
            catch (Exception error)
            {
                // On a timer's callback or a work item: one pool's failure neither ends the process nor spares the others.
                BackgroundFailures.Report("a trim under memory pressure", error);
            }
        }

        // Not only the pools listed: a disposed pool, no longer trimmed, let go of its pinned arrays at its dispose, and
        // they leave the process only through a collection, which its own tick may not ask for in minutes.
        _ = PinnedMemoryCollector.AfterPressureRelease(PageAllocator.PinnedArrays);
    }
}
