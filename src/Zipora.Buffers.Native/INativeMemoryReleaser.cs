using System;

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
    /// <remarks>
    /// It must not throw: nothing on the finalizer thread could catch it, and the process would end. An exception other
    /// than <see cref="OutOfMemoryException"/> (after which the block is offered again at a later collection) is taken
    /// as a refusal: the manager is marked released and never offered again, and the block stays wherever the
    /// releaser left it.
    /// </remarks>
    /// <param name="buffer">The manager whose owner leaked it.</param>
    void Reclaim(NativeMemoryManager buffer) => Release(buffer);
}
