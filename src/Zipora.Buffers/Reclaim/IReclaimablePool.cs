namespace Zipora.Buffers;

/// <summary>What the idle releaser and the memory-pressure watcher need of a pool: both pools implement it.</summary>
internal interface IReclaimablePool
{
    /// <summary>Whether the pool was disposed: trims on memory pressure stop.</summary>
    bool IsDisposed { get; }

    /// <summary>Whether what the pool keeps is managed memory (pinned arrays, arrays, or enough managers of cached blocks), which the GC's heap limit concerns, rather than native memory only.</summary>
    bool HoldsManagedMemory { get; }

    /// <summary>Gives every idle byte back now.</summary>
    void Trim();

    /// <summary>Gives every idle byte back now because memory runs short (counted and reported apart from other trims).</summary>
    void TrimUnderPressure();

    /// <summary>
    /// Called at every tick of the idle clock: gives back what has been idle for more than <paramref name="delayInTicks"/>
    /// ticks. A disposed pool frees here what had to wait out its delay.
    /// </summary>
    void ReleaseIdle(long now, long delayInTicks);

    /// <summary>
    /// The library's context unloads: the pool's idle ticks stop once nothing waits to be unmapped (they hold the
    /// context through the ticker's timer), and stop again at each tick from then on (see <see cref="ContextUnload"/>).
    /// </summary>
    void PauseForUnload();
}
