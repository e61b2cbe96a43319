using System;

namespace Zipora.Buffers;

/// <summary>
/// The segment objects of every segmented buffer, kept for reuse so a steady stream of messages allocates none: a
/// small stack per thread in front of one shared stack. A segment enters empty (it holds no block) and a segment lost
/// with a leaked buffer is simply collected.
/// </summary>
/// <remarks>
/// The per-thread stack is the fast path (no lock, no interlocked instruction). The shared stack catches segments
/// released on another thread than the one that took them (a queue consumed by a second thread), so that pattern
/// reuses them instead of allocating on one side and dropping on the other.
/// </remarks>
internal static class BufferSegmentCache
{
    // A 64 MB message in 128 KB segments takes 512 of them, but one thread rarely builds more than a few messages at
    // once: 64 per thread covers the common ones, the shared stack the rest.
    private const int ThreadCapacity = 64;

    // Bounds the segments kept process-wide (each is 80 bytes): past it they go to the GC.
    private const int SharedCapacity = 4096;

    // Moved at once between the thread's stack and the shared one, so the lock is taken once per this many segments.
    private const int Batch = ThreadCapacity / 2;

#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    [ThreadStatic]
    private static SegmentStack? t_stack;
#pragma warning restore IDE1006

    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and a
    // segment goes back here inside a buffer's dispose, where running out of managed memory must not stop it.
    private static readonly object s_lock = new();
    private static readonly BufferSegment[] s_shared = new BufferSegment[SharedCapacity];
    private static int s_sharedCount;

    /// <summary>An empty segment: the thread's last one released, else one from the shared stack, else a new one.</summary>
    public static BufferSegment Rent()
    {
        SegmentStack? stack = t_stack;
        if (stack is not null)
        {
            BufferSegment[] segments = stack.Items;
            int count = stack.Count - 1;
            if ((uint)count < (uint)segments.Length)
            {
                BufferSegment segment = segments[count];
                segments[count] = null!;
                stack.Count = count;
                return segment;
            }
        }

        return RentSlow();
    }

    /// <summary>Keeps an empty segment (one whose block was released) for the next rent. Throws nothing.</summary>
    public static void Return(BufferSegment segment)
    {
        SegmentStack? stack;
        try
        {
            // A thread's first touch of the thread-statics is the runtime's allocation of them: out of managed memory it
            // throws, inside a buffer's release, which must go on giving its blocks back.
            stack = t_stack;
        }
        catch (OutOfMemoryException)
        {
            ReturnShared(segment);
            return;
        }

        if (stack is not null)
        {
            BufferSegment[] segments = stack.Items;
            int count = stack.Count;
            if ((uint)count < (uint)segments.Length)
            {
                segments[count] = segment;
                stack.Count = count + 1;
                return;
            }
        }

        ReturnSlow(segment);
    }

    private static BufferSegment RentSlow()
    {
        SegmentStack stack = t_stack ??= new SegmentStack(ThreadCapacity);
        BufferSegment[] segments = stack.Items;
        lock (s_lock)
        {
            int take = Math.Min(Batch, s_sharedCount);
            for (int i = 0; i < take; i++)
            {
                segments[i] = s_shared[--s_sharedCount];
                s_shared[s_sharedCount] = null!;
            }

            stack.Count = take;
        }

        return stack.Count > 0 ? Rent() : new BufferSegment();
    }

    private static void ReturnSlow(BufferSegment segment)
    {
        SegmentStack? stack = t_stack;
        if (stack is null)
        {
            try
            {
                stack = t_stack = new SegmentStack(ThreadCapacity);
            }
            catch (OutOfMemoryException)
            {
                ReturnShared(segment);
                return;
            }
        }

        BufferSegment[] segments = stack.Items;
        int count = stack.Count;
        if (count < segments.Length)
        {
            // The thread's first return.
            segments[count] = segment;
            stack.Count = count + 1;
            return;
        }

        // Full: the colder half moves to the shared stack (or to the GC when that is full too).
        lock (s_lock)
        {
            for (int i = 0; i < Batch; i++)
            {
                if (s_sharedCount < s_shared.Length)
                {
                    s_shared[s_sharedCount++] = segments[i];
                }
            }
        }

        Array.Copy(segments, Batch, segments, 0, count - Batch);
        Array.Clear(segments, count - Batch, Batch);
        segments[count - Batch] = segment;
        stack.Count = count - Batch + 1;
    }

    /// <summary>
    /// A return that cannot reach its thread's stack for want of managed memory: the segment goes to the shared stack,
    /// or to the GC when that is full (it holds no block). Allocates nothing.
    /// </summary>
    private static void ReturnShared(BufferSegment segment)
    {
        lock (s_lock)
        {
            if (s_sharedCount < s_shared.Length)
            {
                s_shared[s_sharedCount++] = segment;
            }
        }
    }
}
