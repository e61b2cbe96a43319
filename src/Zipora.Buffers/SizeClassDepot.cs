using System;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The shared store of free buffers of one size class, behind the thread caches (of the medium tier and of the array
/// pool). Threads move buffers in and out in batches, so the lock is taken once per batch rather than once per buffer.
/// </summary>
/// <typeparam name="T">The buffer kept: a native buffer or a managed array.</typeparam>
internal sealed partial class SizeClassDepot<T>
    where T : class
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates managed memory for its wait (56-368 bytes
    // measured), and a return takes this lock with its thread's cache marked busy, where nothing may allocate (see
    // ReserveOne). A contended monitor allocated none (20,000 contended entries on two threads).
    private readonly object _lock = new();
    private T[] _items = new T[16];
    private int _count;
    private bool _closed;

    // Buffers of the class that exist, as their makers reserved them (see ReserveOne): the array always has room for
    // all of them, so a put never grows it.
    private int _reserved;

    /// <summary>The buffers held, those a trim has claimed included, less the claimed ones it let go of already.</summary>
    public int Count => Volatile.Read(ref _count) - Volatile.Read(ref _claimedGone);

    /// <summary>
    /// Makes room for one more buffer of the class, before it is made. A tier that reserves every buffer it makes
    /// (and gives the room back with <see cref="Unreserve"/> when they are gone) has puts that never allocate: a
    /// return, which runs with the thread's cache marked busy, then cannot fail for want of managed memory and leave
    /// it marked, which would keep every later trim waiting for ever.
    /// </summary>
    /// <exception cref="OutOfMemoryException">No managed memory for a larger array: nothing was reserved.</exception>
    public void ReserveOne()
    {
        lock (_lock)
        {
            // The places a trim's claim let go of stay taken until the claim ends (see Claim): the room is counted past them.
            if (_reserved + _claimedGone >= _items.Length)
            {
                Array.Resize(ref _items, _items.Length * 2);
            }

            _reserved++;
        }
    }

    /// <summary>Gives back the room of <paramref name="count"/> buffers that no longer exist (or were never made).</summary>
    public void Unreserve(int count)
    {
        lock (_lock)
        {
            _reserved -= count;
        }
    }

    /// <summary>Moves up to <paramref name="max"/> buffers onto the top of a thread's stack; returns how many moved.</summary>
    public int TakeInto(Span<T> stack, ref int stackCount, int max)
    {
        lock (_lock)
        {
            int moved = Math.Min(max, _count - _claimed);
            int from = _count - moved;
            _items.AsSpan(from, moved).CopyTo(stack[stackCount..]);
            Array.Clear(_items, from, moved);
            _count = from;
            stackCount += moved;
            return moved;
        }
    }

    /// <summary>Takes one block, or <see langword="null"/> when the depot is empty.</summary>
    public T? TakeOne()
    {
        lock (_lock)
        {
            if (_count == _claimed)
            {
                return null;
            }

            T buffer = _items[--_count];
            _items[_count] = null!;
            return buffer;
        }
    }

    /// <summary>Moves the <paramref name="moved"/> oldest (coldest) buffers of a thread's stack here, keeping its warm top.</summary>
    public void PutFrom(Span<T> stack, ref int stackCount, int moved)
    {
        lock (_lock)
        {
            EnsureRoomUnsynchronized(moved);
            stack[..moved].CopyTo(_items.AsSpan(_count));
            _count += moved;
        }

        int kept = stackCount - moved;
        stack.Slice(moved, kept).CopyTo(stack);
        stack.Slice(kept, moved).Clear();
        stackCount = kept;
    }

    /// <summary>
    /// Adds one returned block and counts its return in <paramref name="returns"/>, both under the lock a trim's drain
    /// takes; <see langword="false"/>, uncounted, once the depot is closed (its tier disposed).
    /// </summary>
    /// <remarks>
    /// A return that finds the caches closed (another trim under way) comes here. Counted first and put after, outside
    /// the lock, it was counted where a rent at <c>MaxBytesInUse</c> read the pool's activity, and put where that rent's
    /// trim had already drained the depot: the trim found nothing, and every later rent at the limit saw no activity
    /// since it and rested, refused, with the block's slab free (ReturnCountedWithItsPutSafetyTests: every run). Under
    /// the lock, a count that reader saw is of a block the trim's drain, which comes after the read, waits for; and a
    /// trim that drained after the put reads the count after it too, so it still dates the block as just returned.
    /// </remarks>
    public bool TryPutCounted(T buffer, ref long returns)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return false;
            }

            EnsureRoomUnsynchronized(1);
            Interlocked.Increment(ref returns);
            _items[_count++] = buffer;
            return true;
        }
    }

    /// <summary>Adds one buffer.</summary>
    /// <remarks>
    /// Never called on a closed depot, so it has no closed check (a mutation that dropped one went unnoticed, and every
    /// caller discarded its answer: a block refused here was stranded just as one put in a closed depot is). The array
    /// pool never closes its depots; a slab tier puts here only inside its thread cache's handshake with the caches
    /// open, which its dispose waits out before it drains and closes the depots, or from a trim holding the trim lock
    /// and finding the tier not disposed, where the dispose takes that lock to close them.
    /// </remarks>
    public void Put(T buffer)
    {
        lock (_lock)
        {
            Debug.Assert(!_closed, "only a disposed slab tier closes its depots, and nothing puts into them after that");
            EnsureRoomUnsynchronized(1);
            _items[_count++] = buffer;
        }
    }

    /// <summary>
    /// Lets go of every buffer (for the GC: the array pool's) and returns how many there were. Allocates nothing: a
    /// trim of managed memory runs when the heap is at its limit.
    /// </summary>
    public int Clear()
    {
        lock (_lock)
        {
            Debug.Assert(_claimedItems is null, "only the array pool clears, and it never claims");
            int cleared = _count;
            Array.Clear(_items, 0, _count);
            _count = 0;
            return cleared;
        }
    }

    private void EnsureRoomUnsynchronized(int extra)
    {
        // Never for a tier that reserves its buffers (the native tiers: their returns must not allocate). The array
        // pool's depots grow here while it makes new arrays: a depot never holds more than were made, so the steady
        // state never reallocates.
        if (_count + extra > _items.Length)
        {
            Array.Resize(ref _items, Math.Max(_items.Length * 2, _count + extra));
        }
    }
}
