namespace Zipora.Buffers.Tests;

/// <summary>
/// A registry's slot in every thread's table of caches goes back to the process when its owner ends, and another
/// registry may take it at once. Each test runs in a process of its own: the slots are the process's, and only there
/// is the slot given back the one the next registry takes.
/// </summary>
public sealed class ThreadCacheRegistryTests
{
    [Fact]
    public void ASecondReleaseOfASlotLeavesAloneTheRegistryThatTookItSince()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(ASecondReleaseOfASlotLeavesAloneTheRegistryThatTookItSince)))
        {
            return;
        }

        ThreadCacheRegistry<SegmentThreadCache> ended = NewRegistry();
        ended.ReleaseSlot();
        ThreadCacheRegistry<SegmentThreadCache> next = NewRegistry();

        // A dispose retried after one that failed partway gives the slot back again (the segmented buffers' parking
        // does): had that freed the slot the next registry holds, a third would take it too, and the two registries'
        // caches would push each other out of this thread's table.
        ended.ReleaseSlot();
        ThreadCacheRegistry<SegmentThreadCache> third = NewRegistry();
        SegmentThreadCache nextCache = Register(next);
        SegmentThreadCache thirdCache = Register(third);

        Assert.Same(nextCache, next.FindForThisThread());
        Assert.Same(thirdCache, third.FindForThisThread());
        next.ReleaseSlot();
        third.ReleaseSlot();
    }

    [Fact]
    public void ARegistryWhoseSlotWentBackNeverPublishesACacheInTheSlotAnotherRegistryTookSince()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(ARegistryWhoseSlotWentBackNeverPublishesACacheInTheSlotAnotherRegistryTookSince)))
        {
            return;
        }

        ThreadCacheRegistry<SegmentThreadCache> ended = NewRegistry();
        ended.ReleaseSlot();
        ThreadCacheRegistry<SegmentThreadCache> next = NewRegistry();
        SegmentThreadCache nextCache = Register(next);

        // A registration racing its owner's end (a buffer's return while the pool is disposed) comes after the slot
        // went back: written into the thread's table, it would take the place of the next registry's cache there.
        SegmentThreadCache late = Register(ended);

        Assert.Same(nextCache, next.FindForThisThread());

        // Still listed with its registry's others, so a trim or the registry's retire of exited threads reaches it.
        lock (ended.Lock)
        {
            Assert.Contains(late, ended.Caches.ToArray());
        }

        next.ReleaseSlot();
    }

    private static ThreadCacheRegistry<SegmentThreadCache> NewRegistry() => new(static _ => { });

    private static SegmentThreadCache Register(ThreadCacheRegistry<SegmentThreadCache> registry)
    {
        var cache = new SegmentThreadCache();
        lock (registry.Lock)
        {
            registry.AddForThisThreadUnsynchronized(cache);
        }

        return cache;
    }
}
