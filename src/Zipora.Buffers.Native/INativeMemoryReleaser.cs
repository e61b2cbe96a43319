namespace Zipora.Buffers.Native;

/// <summary>Takes back the memory of a <see cref="NativeMemoryManager"/> when its owner disposes it.</summary>
/// <remarks>
/// Pools implement this to recycle a block instead of freeing it. <see cref="Release"/> is called at most once per
/// rental, on whatever thread disposed the owner, after the manager has stopped handing out spans.
/// </remarks>
public interface INativeMemoryReleaser
{
    /// <summary>Called once when <paramref name="buffer"/> is disposed by its owner.</summary>
    /// <param name="buffer">The manager whose memory comes back.</param>
    void Release(NativeMemoryManager buffer);

    /// <summary>
    /// Called once, on the finalizer thread, when <paramref name="buffer"/> was garbage collected while still handed
    /// out: its owner dropped it without disposing it. The block is safe to reuse (nothing can reach it any more);
    /// by default it is taken back like a disposed one.
    /// </summary>
    /// <param name="buffer">The manager whose owner leaked it.</param>
    void Reclaim(NativeMemoryManager buffer) => Release(buffer);
}
