using System;
using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The shared store of free blocks of one medium size class, behind the thread caches. Threads move blocks in and
/// out in batches, so the lock is taken once per batch rather than once per buffer.
/// </summary>
internal sealed class SizeClassDepot
{
    private readonly Lock _lock = new();
    private NativeMemoryManager[] _items = new NativeMemoryManager[16];
    private int _count;
    private bool _closed;

    public int Count => Volatile.Read(ref _count);

    /// <summary>Moves up to <paramref name="max"/> blocks onto the top of a thread's stack; returns how many moved.</summary>
    public int TakeInto(Span<NativeMemoryManager> stack, ref int stackCount, int max)
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
    public NativeMemoryManager? TakeOne()
    {
        lock (_lock)
        {
            if (_count == 0)
            {
                return null;
            }

            NativeMemoryManager buffer = _items[--_count];
            _items[_count] = null!;
            return buffer;
        }
    }

    /// <summary>Moves the <paramref name="moved"/> oldest (coldest) blocks of a thread's stack here, keeping its warm top.</summary>
    public void PutFrom(Span<NativeMemoryManager> stack, ref int stackCount, int moved)
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
    public bool TryPut(NativeMemoryManager buffer)
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

    /// <summary>Moves every block into <paramref name="into"/>; with <paramref name="close"/>, the depot takes no block after this.</summary>
    public void DrainInto(List<NativeMemoryManager> into, bool close)
    {
        lock (_lock)
        {
            into.AddRange(new ArraySegment<NativeMemoryManager>(_items, 0, _count));
            Array.Clear(_items, 0, _count);
            _count = 0;
            _closed |= close;
        }
    }

    private void EnsureRoomUnsynchronized(int extra)
    {
        // The depot only grows while the tier carves new blocks (it never holds more blocks than were carved),
        // so the steady state never reallocates.
        if (_count + extra > _items.Length)
        {
            Array.Resize(ref _items, Math.Max(_items.Length * 2, _count + extra));
        }
    }
}
