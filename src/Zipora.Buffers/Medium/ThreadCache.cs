using System.Threading;

namespace Zipora.Buffers;

/// <summary>The medium tier's cache for one thread: a <see cref="SizeClassCache"/> per size class.</summary>
internal sealed class ThreadCache
{
    public ThreadCache(MediumTier tier, int[] capacities)
    {
        Tier = tier;
        Owner = Thread.CurrentThread;
        Classes = new SizeClassCache[capacities.Length];
        for (int i = 0; i < capacities.Length; i++)
        {
            Classes[i] = new SizeClassCache(capacities[i]);
        }
    }

    /// <summary>The tier this cache belongs to: a thread-static slot can outlive a disposed pool and be reused by the next.</summary>
    public readonly MediumTier Tier;

    /// <summary>The thread that owns the cache; once it has exited, the cache's blocks are moved to the depot.</summary>
    public readonly Thread Owner;

    public readonly SizeClassCache[] Classes;

    /// <summary>
    /// 1 while the owner thread is inside a rent or return. With the disposing thread's process-wide barrier this
    /// forms an asymmetric Dekker handshake: the owner pays two plain stores, the rare disposal pays the barrier.
    /// </summary>
    public int InUse;
}
