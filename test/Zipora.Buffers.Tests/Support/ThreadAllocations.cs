using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Counts the managed bytes the calling thread allocates, exactly, for the tests that require a path to allocate
/// nothing (a return, which must not fail for want of managed memory) or exactly one object per message.
/// </summary>
/// <remarks>
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> is exact only when no background GC runs beside the count: one
/// can add the unused rest of the thread's allocation quantum, up to 8,152 bytes, to a thread that allocated nothing.
/// Measured on .NET 10.0.12, 2 vCPU, a thread spinning through a window beside other threads allocating: 1,935 of
/// 66,753 windows moved with one thread allocating pinned 64 KB arrays, 717 of 65,582 with large arrays, 248 to 1,001
/// of 15,000 to 27,000 with two to four threads allocating small ones (none with one); with background GC off, none,
/// whatever the other threads did (22,000 to 73,000 windows, with up to 21,889 blocking collections among them). Under
/// the parallel suite, tests that required 0 bytes failed at random with 56 B to 3 KB for it. So the test project runs
/// with background GC off (<c>ConcurrentGarbageCollection</c> in its project file), which this checks.
/// </remarks>
internal static class ThreadAllocations
{
    /// <summary>The bytes <paramref name="action"/> allocated on this thread.</summary>
    public static long During(Action action)
    {
        Assert.True(
            string.Equals(AppContext.GetData("System.GC.Concurrent")?.ToString(), "false", StringComparison.OrdinalIgnoreCase),
            "background GC is on: GC.GetAllocatedBytesForCurrentThread then counts bytes nobody allocated");
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    /// <summary>The bytes <paramref name="action"/> allocated on a thread started for it: a thread with no caches yet.</summary>
    public static long OnAFreshThread(Action action)
    {
        long allocated = -1;
        var thread = new System.Threading.Thread(() => allocated = During(action));
        thread.Start();
        thread.Join();
        return allocated;
    }
}
