namespace Zipora.Buffers;

/// <summary>
/// What the pool needs of every tier besides renting (each tier's <c>Rent</c> is called directly on its sealed type,
/// so the hot path has no virtual call).
/// </summary>
internal abstract class BufferTier
{
    /// <summary>Counters of the tier as they are now.</summary>
    public abstract TierStatistics GetStatistics();

    /// <summary>
    /// <see cref="TierStatistics.BytesRetained"/> as <see cref="GetStatistics"/> gives it, and the rents and returns so far
    /// (a parked block counted once, when parked), a figure that only grows, so the caps can rest while it stands still:
    /// read without allocating, for the pressure trim's and the caps' checks, which run at the GC heap limit too.
    /// </summary>
    public abstract (long Retained, long Activity) RetainedAndActivity();

    /// <summary>Gives every cached, idle byte back to the OS now. Buffers in use are not touched.</summary>
    public abstract void Trim();

    /// <summary>Gives back what has been idle for at least <paramref name="delayInTicks"/> ticks of the idle clock.</summary>
    public abstract void ReleaseIdle(long now, long delayInTicks);

    /// <summary>
    /// Stops renting and frees every cached buffer. Buffers still rented stay valid; when their owners dispose them
    /// their memory is freed instead of cached. Called by the pool, again after it threw (out of managed memory): a
    /// later call finishes what a failed one left, with no buffer lost meanwhile, and a call after one finished does
    /// nothing.
    /// </summary>
    public abstract void Dispose();
}
