using System;
using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The owner of one rent of a pooled block, handed out by default: a fresh object per rent, so an owner and every
/// <see cref="Memory{T}"/> taken from it die with its <see cref="Dispose()"/>, whatever later happens to the block.
/// </summary>
/// <remarks>
/// <para>
/// The state is the reference to the block, taken away by one atomic exchange on dispose: exactly one
/// <see cref="Dispose()"/> ever sees it, so a stale second dispose (after any number of later rents of the block) and
/// two disposes racing on different threads both find nothing to give back. Beside it sits the block's generation at
/// the rent: should the block be reclaimed by its finalizer while this owner lives on (a user's finalizer resurrected
/// it), the generation has moved, and the owner can neither reach nor return the block's next renter. The object is
/// 32 bytes (<see cref="MemoryPool{T}.Shared"/>'s owner is 24).
/// </para>
/// <para>
/// It has no finalizer (a finalizable object is several times dearer to allocate). A leaked owner is reclaimed through
/// its block instead: nothing in the pool references a rented block, so the block becomes unreachable with its owner
/// and its own finalizer hands it to the quarantine.
/// </para>
/// </remarks>
[SuppressMessage("Design", "CA1063:Implement IDisposable Correctly",
    Justification = "IDisposable is re-implemented so Dispose skips GC.SuppressFinalize: the owner has no finalizer, and the call would cost every rent.")]
internal sealed unsafe class BlockOwner : MemoryManager<byte>, IDisposable
{
    private int _generation;
    private NativeMemoryManager? _block;

    /// <summary>
    /// Made before its block is taken, then given it by <see cref="Hold"/>: out of managed memory for this object (at
    /// the GC heap limit), the rent throws having taken no block, where a block taken first would stay counted in use,
    /// held by nobody, until its finalizer gave it to the leak quarantine (OwnerAllocationHeapLimitSafetyTests).
    /// </summary>
    public BlockOwner()
    {
    }

    /// <summary>Takes the block just rented for this owner, which is then handed out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public BlockOwner Hold(NativeMemoryManager block)
    {
        _block = block;
        _generation = block.Generation;
        return this;
    }

    /// <summary>The whole block as <see cref="Memory{T}"/>.</summary>
    /// <exception cref="ObjectDisposedException">The owner was disposed.</exception>
    public override Memory<byte> Memory
    {
        get
        {
            NativeMemoryManager block = Block();
            return CreateMemory(block.Length);
        }
    }

    /// <summary>The whole block as a span.</summary>
    /// <exception cref="ObjectDisposedException">The owner was disposed.</exception>
    public override Span<byte> GetSpan()
    {
        // Runs on every Memory<byte>.Span: two loads, two compares, a span over the block's fixed fields.
        NativeMemoryManager block = Block();
        return new Span<byte>((void*)block.Address, block.Length);
    }

    /// <summary>A handle over the native pointer; no GC handle is taken because the memory never moves.</summary>
    /// <param name="elementIndex">Offset into the block, from 0 to its length inclusive.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="elementIndex"/> is outside 0..Length.</exception>
    /// <exception cref="ObjectDisposedException">The owner was disposed.</exception>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        NativeMemoryManager block = Block();
        if ((uint)elementIndex > (uint)block.Length)
        {
            ThrowHelper.ThrowPinIndexOutOfRange(elementIndex);
        }

        // Native memory never moves: no GC handle, and Unpin has nothing to undo. The handle holds the block, not this
        // owner (which lets go of it at dispose): a pinned array's block holds its array, and a handle kept past the
        // dispose is a raw pointer the GC does not follow, into an array a pressure release lets go of at once.
        return new MemoryHandle((byte*)block.Address + elementIndex, default, block);
    }

    /// <summary>Does nothing: native memory is never moved by the GC.</summary>
    public override void Unpin()
    {
    }

    /// <summary>Gives the block back once; every later call, on any thread, finds nothing to give.</summary>
    public void Dispose()
    {
        NativeMemoryManager? block = Interlocked.Exchange(ref _block, null);
        if (block is not null && block.Generation == _generation)
        {
            block.Dispose();
        }
    }

    protected override void Dispose(bool disposing) => Dispose();

    /// <summary>The block's array segment when its pages are pinned arrays (Kestrel's socket transport needs them).</summary>
    protected override bool TryGetArray(out ArraySegment<byte> segment)
    {
        NativeMemoryManager? block = _block;
        if (block is null || block.Generation != _generation)
        {
            segment = default;
            return false;
        }

        return block.TryGetArraySegment(out segment);
    }

    /// <summary>The block, while this owner still holds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private NativeMemoryManager Block()
    {
        NativeMemoryManager? block = _block;
        if (block is null || block.Generation != _generation)
        {
            ThrowHelper.ThrowOwnerDisposed();
        }

        return block;
    }
}
