using System;
using System.Buffers;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Native;

/// <summary>
/// A <see cref="MemoryManager{T}"/> over a block of native memory. Pinning costs nothing (the memory never moves)
/// and disposing hands the block to an <see cref="INativeMemoryReleaser"/> instead of freeing it.
/// </summary>
/// <remarks>
/// A manager is bound to one block for its whole life, and pools keep it with the block. A pool may hand the manager
/// itself out again and again, so a steady rent/return allocates nothing (then a second <see cref="Dispose()"/> is
/// ignored only until the block is rented again), or wrap each rent in an owner of its own that disposes the manager
/// exactly once. After <see cref="Dispose()"/>, <see cref="Memory"/>, <see cref="GetSpan"/> and <see cref="Pin"/>
/// throw <see cref="ObjectDisposedException"/> until the owning pool hands the block out again.
/// </remarks>
[SuppressMessage("Usage", "CA1816:Dispose methods should call SuppressFinalize",
    Justification = "A pooled manager is handed out again after Dispose; its finalizer must stay armed to reclaim a later leak.")]
[SuppressMessage("Reliability", "CA2015:Do not define finalizers for types derived from MemoryManager<T>",
    Justification = "The finalizer only runs for a block whose owner was leaked; pools quarantine such blocks for their idle delay before reuse, so a Span outliving its leaked owner is not handed to a new renter while it can still run.")]
[SuppressMessage("Design", "CA1063:Implement IDisposable Correctly",
    Justification = "IDisposable is re-implemented so the owner's Dispose skips GC.SuppressFinalize: a pooled manager is handed out again, and its finalizer must stay armed to reclaim a leaked block.")]
public sealed unsafe class NativeMemoryManager : MemoryManager<byte>, IDisposable
{
    private const int StateLive = 0;
    private const int StateReturned = 1;
    private const int StateReleased = 2;

    private readonly byte* _pointer;
    private readonly int _length;
    private readonly INativeMemoryReleaser? _releaser;
    private readonly byte[]? _array;
    private readonly int _arrayOffset;

    // Plain field: the owner is used by one logical flow at a time (rent, use, dispose), and handing it to another
    // thread goes through that flow's own synchronisation (a Pipe, a Task, a channel).
    private int _state;

    // Bumped each time the finalizer reclaims the block: an owner a pool wrapped around it (and that a user's
    // finalizer brought back to life) sees a stale generation and can no longer reach the block's next renter.
    private int _generation;

    // Set when the finalizer ran while the block was back with its pool: the owner that returned it died with it (a
    // user's finalizer disposed it). The registration is renewed when the block is handed out again, so a later leak
    // is still reclaimed; the blocks of a pool that was dropped are simply collected.
    private bool _finalizationLost;

    // Hand-outs so far, and the one the finalizer last found live: a block is reclaimed only when the finalizer finds
    // the same rent live at two collections (see the finalizer).
    private int _rentals;
    private int _suspectedRental = -1;

    // The hand-outs so far when a pool last dropped pages under this block: while it has not been handed out since,
    // those pages are still dropped, and a trim neither advises nor counts them again. Costs the fast path nothing.
    private int _rentalsAtPagesDropped;

    /// <summary>Wraps <paramref name="length"/> bytes at <paramref name="address"/>.</summary>
    /// <param name="address">Start of the block; the caller keeps it alive until the manager is disposed.</param>
    /// <param name="length">Length of the block in bytes.</param>
    /// <param name="releaser">Takes the block back on dispose; <see langword="null"/> when the caller frees it.</param>
    /// <exception cref="ArgumentNullException"><paramref name="address"/> is zero and <paramref name="length"/> is not.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public NativeMemoryManager(nint address, int length, INativeMemoryReleaser? releaser = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (address == 0 && length != 0)
        {
            ThrowHelper.ThrowArgumentNull(nameof(address));
        }

        _pointer = (byte*)address;
        _length = length;
        _releaser = releaser;
        if (releaser is null)
        {
            // Caller-owned memory: there is nothing to give back if the manager is lost.
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Wraps a block that lies in a pinned array, so <see cref="TryGetArray"/> can expose it as a segment.</summary>
    internal NativeMemoryManager(nint address, int length, INativeMemoryReleaser releaser, byte[]? array, int arrayOffset)
        : this(address, length, releaser)
    {
        _array = array;
        _arrayOffset = arrayOffset;
    }

    /// <summary>
    /// Reclaims a block whose owner was garbage collected without being disposed, so a leak costs the pool a late
    /// return instead of the memory: at the second collection that finds the same rent unreachable. The manager
    /// registers again, since its releaser may hand it out and lose it again; while it is cached by a pool it is
    /// reachable and never finalized.
    /// </summary>
    ~NativeMemoryManager()
    {
        if (_releaser is null)
        {
            return;
        }

        if (_state != StateLive)
        {
            _finalizationLost |= _state == StateReturned;
            return;
        }

        // Found live and unreachable. Either its owner leaked it, or a user's finalizer disposed that owner moments ago
        // and the block was rented again before this finalizer ran, to a renter who holds it now. Only finding the same
        // rent unreachable again, at a later collection, proves the leak; an innocent renter keeps the block reachable.
        GC.ReRegisterForFinalize(this);
        if (_suspectedRental != _rentals)
        {
            _suspectedRental = _rentals;
            return;
        }

        _state = StateReturned;
        _generation++;
        try
        {
            _releaser.Reclaim(this);
        }
        catch (OutOfMemoryException)
        {
            // Nothing may leave a finalizer. Out of managed memory (a process at its GC heap limit) the quarantine took
            // nothing (it lists the block first): the block stays the leaked rent's, still registered above, and is
            // found again at a later collection.
            _generation--;
            _state = StateLive;
        }
        catch (Exception)
        {
            // Anything else is the releaser's own failure (a user's releaser whose pool was disposed, say), which no
            // caller can see here and which would end the process. Taken as the releaser refusing the block: it is
            // marked released and never offered again (each later collection would throw again), and its memory is
            // the releaser's to account for, as INativeMemoryReleaser.Reclaim documents.
            _state = StateReleased;
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Start of the block.</summary>
    public nint Address => (nint)_pointer;

    /// <summary>Length of the block in bytes.</summary>
    public int Length => _length;

    /// <summary>Whether the owner has disposed this manager (its memory must not be used).</summary>
    public bool IsDisposed => _state != StateLive;

    /// <summary>The whole block as <see cref="Memory{T}"/>.</summary>
    /// <exception cref="ObjectDisposedException">The manager was disposed.</exception>
    public override Memory<byte> Memory
    {
        get
        {
            if (_state != StateLive)
            {
                ThrowHelper.ThrowObjectDisposed(this);
            }

            return CreateMemory(_length);
        }
    }

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The manager was disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override Span<byte> GetSpan()
    {
        // Runs on every Memory<byte>.Span: one compare and a span over fixed fields.
        if (_state != StateLive)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }

        return new Span<byte>(_pointer, _length);
    }

    /// <summary>Returns a handle over the native pointer; no GC handle is taken because the memory never moves.</summary>
    /// <param name="elementIndex">Offset into the block, from 0 to <see cref="Length"/> inclusive.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="elementIndex"/> is outside 0..Length.</exception>
    /// <exception cref="ObjectDisposedException">The manager was disposed.</exception>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        if (_state != StateLive)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }

        if ((uint)elementIndex > (uint)_length)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(elementIndex));
        }

        return new MemoryHandle(_pointer + elementIndex, default, this);
    }

    /// <summary>Gives the block as an array segment when it lies in a pinned array; native memory has no array.</summary>
    /// <param name="segment">The block within its array.</param>
    /// <returns>Whether the block is array-backed.</returns>
    protected override bool TryGetArray(out ArraySegment<byte> segment) => TryGetArraySegment(out segment);

    /// <summary>The block within its pinned array, for a pool's own owner of the block; false for native memory or a disposed block.</summary>
    internal bool TryGetArraySegment(out ArraySegment<byte> segment)
    {
        if (_array is null || _state != StateLive)
        {
            segment = default;
            return false;
        }

        segment = new ArraySegment<byte>(_array, _arrayOffset, _length);
        return true;
    }

    /// <summary>Does nothing: native memory is never moved by the GC.</summary>
    public override void Unpin()
    {
    }

    /// <summary>Gives the block back to its releaser. A second call does nothing.</summary>
    public void Dispose()
    {
        if (_state != StateLive)
        {
            return;
        }

        if (_releaser is null)
        {
            _state = StateReleased;
            return;
        }

        _state = StateReturned;
        _releaser.Release(this);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing) => Dispose();

    /// <summary>Changes each time the finalizer reclaims the block; a pool's own owner of one rent compares it to the one it was made with.</summary>
    internal int Generation => Volatile.Read(ref _generation);

    /// <summary>What takes the block back on dispose (<see langword="null"/> for a manager that frees its own memory).</summary>
    internal INativeMemoryReleaser? Releaser => _releaser;

    /// <summary>Whether the block is back with its releaser and may be handed out again.</summary>
    internal bool IsReturned => _state == StateReturned;

    /// <summary>Whether the block's memory went back to its pool for good (<see cref="MarkReleased"/>).</summary>
    internal bool IsReleased => _state == StateReleased;

    /// <summary>
    /// Marks a live block returned without giving it to its releaser: a pool that keeps the block for its next use
    /// outside its releaser's caches (a segmented buffer's thread cache) makes memory kept past the block's last use
    /// refuse every use, as a return would, and hands it out again with <see cref="Reactivate"/>, or gives it to the
    /// releaser itself. Only for a block the caller holds alone.
    /// </summary>
    internal void MarkReturnedForReuse()
    {
        Debug.Assert(_state == StateLive, "only a live block is kept for reuse");
        _state = StateReturned;
    }

    /// <summary>Hands a returned block out again.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Reactivate()
    {
        Debug.Assert(_state == StateReturned, "only a returned block can be handed out again");
        _state = StateLive;
        _rentals++;
        if (_finalizationLost)
        {
            RenewFinalization();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RenewFinalization()
    {
        // A finalizer racing this hand-out can set the flag again just after this: the registration is then renewed
        // at the following hand-out, which leaves a leak during this one rental unreclaimed at worst.
        _finalizationLost = false;
        GC.ReRegisterForFinalize(this);
    }

    /// <summary>Notes that the pool dropped pages under this free block (see <see cref="UsedSincePagesDropped"/>).</summary>
    internal void NotePagesDropped() => _rentalsAtPagesDropped = _rentals;

    /// <summary>
    /// Whether the block was handed out since its pool last called <see cref="NotePagesDropped"/>: its pages may then
    /// be committed again. Read by the pool only while the block is free and out of every cache.
    /// </summary>
    internal bool UsedSincePagesDropped => _rentalsAtPagesDropped != _rentals;

    /// <summary>Marks a block whose memory went back to the OS: every later use throws, and there is nothing left to reclaim.</summary>
    internal void MarkReleased()
    {
        _state = StateReleased;
        GC.SuppressFinalize(this);
    }

    /// <summary>Describes the block, for debugging.</summary>
    public override string ToString() => $"NativeMemoryManager(0x{(nint)_pointer:x}, {_length} bytes, {StateName})";

    private string StateName => _state switch
    {
        StateLive => "live",
        StateReturned => "returned",
        _ => "released",
    };
}
