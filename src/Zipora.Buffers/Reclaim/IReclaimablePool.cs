namespace Zipora.Buffers;

/// <summary>What the idle releaser and the memory-pressure watcher need of a pool: both pools implement it.</summary>
internal interface IReclaimablePool
{
    /// <summary>Whether the pool was disposed: the background work then stops.</summary>
    bool IsDisposed { get; }

    /// <summary>Gives every idle byte back now.</summary>
    void Trim();

    /// <summary>Gives back what has been idle for at least <paramref name="delayInTicks"/> ticks of the idle clock.</summary>
    void ReleaseIdle(long now, long delayInTicks);
}
