using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The shared store of free buffers of one size class, behind the thread caches (of the medium tier and of the array
/// pool). Threads move buffers in and out in batches, so the lock is taken once per batch rather than once per buffer.
/// </summary>
/// <typeparam name="T">The buffer kept: a native buffer or a managed array.</typeparam>
internal sealed class SizeClassDepot<T>
    where T : class
{
    private readonly Lock _lock = new();
    private T[] _items = new T[16];
    private int _count;
    private bool _closed;

    public int Count => Volatile.Read(ref _count);

    /// <summary>Moves up to <paramref name="max"/> buffers onto the top of a thread's stack; returns how many moved.</summary>
    public int TakeInto(Span<T> stack, ref int stackCount, int max)
    {
        lock (_lock)
        {
            int moved = Math.Min(max, _count);
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
            if (_count == 0)
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

    /// <summary>Adds one block; <see langword="false"/> once the depot is closed (its tier disposed).</summary>
    public bool TryPut(T buffer)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return false;
            }

            EnsureRoomUnsynchronized(1);
            _items[_count++] = buffer;
            return true;
        }
    }

    /// <summary>Moves every buffer into <paramref name="into"/>; with <paramref name="close"/>, the depot takes no buffer after this.</summary>
    public void DrainInto(List<T> into, bool close)
    {
        lock (_lock)
        {
            into.AddRange(new ArraySegment<T>(_items, 0, _count));
            Array.Clear(_items, 0, _count);
            _count = 0;
            _closed |= close;
        }
    }

    private void EnsureRoomUnsynchronized(int extra)
    {
        // The depot only grows while the tier creates new buffers (it never holds more buffers than were created),
        // so the steady state never reallocates.
        if (_count + extra > _items.Length)
        {
            Array.Resize(ref _items, Math.Max(_items.Length * 2, _count + extra));
        }
    }
}
