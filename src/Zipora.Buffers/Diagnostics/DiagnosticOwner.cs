using System;
using System.Buffers;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The owner handed out in diagnostic mode: one per rent, wrapping the pooled block. Because it is never reused, a
/// stale reference to it (or to a Memory taken from it) throws even after the block has been handed to someone else.
/// </summary>
[SuppressMessage("Reliability", "CA2015:Do not define finalizers for types derived from MemoryManager<T>",
    Justification = "The finalizer only reports the leak; the block itself is reclaimed, after a quarantine, by the pooled manager's own finalizer.")]
internal sealed class DiagnosticOwner : MemoryManager<byte>
{
    /// <summary>Written over returned memory, so a read after dispose sees an obvious pattern instead of stale data.</summary>
    public const byte Poison = 0xDD;

    private readonly NativeMemoryManager _block;
    private readonly PoolDiagnostics _diagnostics;
    private readonly string _tier;
    private readonly StackTrace? _rentedAt;
    private readonly int _generation;
    private StackTrace? _disposedAt;
    private int _disposed;

    public DiagnosticOwner(NativeMemoryManager block, PoolDiagnostics diagnostics, string tier, StackTrace? rentedAt)
    {
        _block = block;
        _generation = block.Generation;
        _diagnostics = diagnostics;
        _tier = tier;
        _rentedAt = rentedAt;
    }

    ~DiagnosticOwner()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            // Nothing may leave a finalizer. At the GC heap limit even the call may throw (the runtime compiles a
            // method at its first call): the report is then lost, and counted as such.
            try
            {
                _diagnostics.ReportLeak(_tier, _block.Length, _rentedAt);
            }
            catch (OutOfMemoryException)
            {
                EventsOffTheCaller.CountLost();
            }
        }
    }

    public override Memory<byte> Memory
    {
        get
        {
            ThrowIfDisposed();
            return CreateMemory(_block.Length);
        }
    }

    public override Span<byte> GetSpan()
    {
        ThrowIfDisposed();
        return _block.GetSpan();
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ThrowIfDisposed();
        return _block.Pin(elementIndex);
    }

    public override void Unpin()
    {
    }

    /// <summary>
    /// The block's array segment when its pages are pinned arrays, as the default owner gives it: without it, a pool
    /// for Kestrel switched to diagnostics (by the environment variable, say) broke its socket transport, which sends
    /// from arrays only (DiagnosticPinnedArraysContractTests).
    /// </summary>
    protected override bool TryGetArray(out ArraySegment<byte> segment)
    {
        if (!IsLive)
        {
            segment = default;
            return false;
        }

        return _block.TryGetArraySegment(out segment);
    }

    protected override void Dispose(bool disposing)
    {
        // The first dispose's stack only for a rent whose stack was captured (every rent in All, one in the sample
        // rate in Sampled): a stack walk costs microseconds, and taken at every dispose it made Sampled mode as slow
        // as All (DiagnosticModeTests). A second dispose is the misuse itself, so its own stack is always taken.
        StackTrace? here = _rentedAt is null ? null : StackOfCaller();
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            ReportDoubleDispose(here ?? StackOfCaller());
            return;
        }

        // A block reclaimed by its finalizer while this owner lived on (a user's finalizer resurrected it) belongs to
        // its pool again: nothing to poison or return.
        _disposedAt = here;
        if (_block.Generation == _generation)
        {
            _block.GetSpan().Fill(Poison);
            _block.Dispose();
        }
    }

    /// <summary>Reports this owner's second dispose; ignored whatever happens: out of managed memory only the report is lost (counted as such).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReportDoubleDispose(StackTrace? secondDispose)
    {
        try
        {
            _diagnostics.ReportDoubleDispose(_tier, _block.Length, _rentedAt, _disposedAt, secondDispose);
        }
        catch (OutOfMemoryException)
        {
            EventsOffTheCaller.CountLost();
        }
    }

    /// <summary>
    /// The stack of the one disposing, for the report of a later second dispose; <see langword="null"/> out of managed
    /// memory. A return allocates nothing in any other mode, so at the GC heap limit it must not fail here for want of
    /// a report that may never be needed: it threw, and kept the block from its pool (DiagnosticReturnHeapLimitSafetyTests).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static StackTrace? StackOfCaller()
    {
        try
        {
            // Skips this frame and Dispose(bool).
            return new StackTrace(2, fNeedFileInfo: false);
        }
        catch (OutOfMemoryException)
        {
            return null;
        }
    }

    /// <summary>Whether this owner is not disposed and its block is still the rent it was made for.</summary>
    private bool IsLive => Volatile.Read(ref _disposed) == 0 && _block.Generation == _generation;

    private void ThrowIfDisposed()
    {
        if (!IsLive)
        {
            throw new ObjectDisposedException(nameof(TieredMemoryPool), "This buffer was returned to the pool (diagnostic mode: every rent gets its own owner, so a stale one always throws).");
        }
    }
}
