using System.Threading;

namespace Zipora.Buffers;

/// <summary>What a per-thread cache carries for its <see cref="ThreadCacheRegistry{TCache}"/>.</summary>
internal abstract class ThreadOwnedCache
{
    /// <summary>The thread that owns the cache; once it has exited, the registry hands the cache back to be emptied.</summary>
    public readonly Thread Owner = Thread.CurrentThread;

    /// <summary>
    /// The id of the registry that holds the cache: a thread's slot may still hold a cache of a disposed registry
    /// whose slot was reused. An id, not a reference, so a thread that used a pool never keeps it reachable.
    /// </summary>
    public long RegistryId;
}
