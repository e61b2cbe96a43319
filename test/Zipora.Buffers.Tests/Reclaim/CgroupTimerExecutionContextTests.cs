using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The process-wide cgroup timer, started by the first pool made, lives as long as the process: it must not keep the
/// execution context (the AsyncLocals) of whoever made that pool, nor restore it at every tick.
/// </summary>
public sealed class CgroupTimerExecutionContextTests
{
    private static readonly AsyncLocal<object?> s_request = new();

    [Fact]
    public void TheCgroupTimerDoesNotKeepTheAsyncLocalsOfTheCallerThatMadeTheFirstPool()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(CgroupTimerExecutionContextTests), nameof(TheCgroupTimerDoesNotKeepTheAsyncLocalsOfTheCallerThatMadeTheFirstPool)))
        {
            return;
        }

        Assert.False(MemoryPressureWatcher.IsWatchingCgroup, "a pool was made in this process before the test: the timer's context is not the test's");
        WeakReference request = MakeTheFirstPoolInsideARequest();
        Skip.Unless(MemoryPressureWatcher.IsWatchingCgroup, "the process is in no memory cgroup it can read: no cgroup timer");

        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true);
        Assert.False(request.IsAlive, "the request's AsyncLocal value outlived it: the cgroup timer captured the execution context it was made in");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference MakeTheFirstPoolInsideARequest()
    {
        var request = new object();
        s_request.Value = request;
        new TieredMemoryPool().Dispose();
        s_request.Value = null;
        return new WeakReference(request);
    }
}
