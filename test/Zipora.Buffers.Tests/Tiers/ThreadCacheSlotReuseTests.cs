using System.Reflection;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The process's table of thread-cache slots (one per tier of each live pool) does not grow with the pools ever made.
/// It counts the slots handed out while the test runs, so it runs in a process of its own.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class ThreadCacheSlotReuseTests
{
    [Fact]
    public void PoolsCreatedUsedAndDisposedOneAfterAnotherReuseTheirThreadCacheSlots()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(PoolsCreatedUsedAndDisposedOneAfterAnotherReuseTheirThreadCacheSlots)))
        {
            return;
        }

        // Each pool's four tiers take a slot of the process's table of cache slots; a disposed pool's slots are
        // reused, so the slots handed out while this test runs are those the pools alive at once need, not four per
        // pool ever made (20,000 here). In a process of its own, so no other test's pools take or give back slots.
        const int Pools = 5_000;
        FieldInfo next = typeof(ThreadCacheSlots).GetField("s_next", BindingFlags.NonPublic | BindingFlags.Static)!;
        int before = (int)next.GetValue(null)!;
        for (int i = 0; i < Pools; i++)
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
            pool.Rent(64).Dispose();
            pool.Rent(4096).Dispose();
        }

        int added = (int)next.GetValue(null)! - before;
        TestContext.Current.TestOutputHelper?.WriteLine($"slots handed out: {added}");
        // A run hands out 8: the four tiers of two pools at once, while one is disposed and the next made.
        Assert.InRange(added, 0, 8);
    }
}
