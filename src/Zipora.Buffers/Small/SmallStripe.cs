using System;
using System.Runtime.CompilerServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// One per-core shard of the small tier: a stack of free blocks per size class and the shard's counters, behind a
/// lock that is almost never contended because threads pick the shard of the core they run on.
/// </summary>
internal sealed class SmallStripe
{
    private const int InitialStackCapacity = 16;

    private readonly NativeMemoryManager[][] _stacks;
    private readonly int[] _counts;
    private SpinGate _gate;

    public SmallStripe(int classCount)
    {
        _stacks = new NativeMemoryManager[classCount][];
        for (int i = 0; i < classCount; i++)
        {
            _stacks[i] = new NativeMemoryManager[InitialStackCapacity];
        }

        _counts = new int[classCount];
        RentsByClass = new long[classCount];
        InUseByClass = new long[classCount];
    }

    // Counters, written only under the lock.
    public long Hits;
    public long Misses;
    public long Returns;
    public long BytesInUse;
    public long BytesRented;

    public long BytesRequested;

    // Per class, for the size histogram. A block returned on another core's stripe is counted out there, so one
    // stripe's figure may go negative; the sum over stripes is right.
    public readonly long[] RentsByClass;
    public readonly long[] InUseByClass;

    /// <summary>Free blocks of class <paramref name="classIndex"/> on this stripe. Caller holds the lock.</summary>
    public int CountOf(int classIndex) => _counts[classIndex];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter() => _gate.Enter();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit() => _gate.Exit();

    /// <summary>Pops a free block of the class. Caller holds the lock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public NativeMemoryManager? TryPopUnsynchronized(int classIndex)
    {
        int count = _counts[classIndex] - 1;
        if (count < 0)
        {
            return null;
        }

        _counts[classIndex] = count;
        ref NativeMemoryManager slot = ref _stacks[classIndex][count];
        NativeMemoryManager buffer = slot;

        // Nothing in the pool may keep a rented block reachable, or a leaked one would never be finalized.
        slot = null!;
        return buffer;
    }

    /// <summary>Pushes a free block of the class. Caller holds the lock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PushUnsynchronized(int classIndex, NativeMemoryManager buffer)
    {
        NativeMemoryManager[] stack = _stacks[classIndex];
        int count = _counts[classIndex];
        if ((uint)count >= (uint)stack.Length)
        {
            stack = Grow(classIndex);
        }

        stack[count] = buffer;
        _counts[classIndex] = count + 1;
    }

    /// <summary>Moves every free block into <paramref name="into"/>. Caller holds the lock.</summary>
    public void DrainUnsynchronized(System.Collections.Generic.List<NativeMemoryManager> into)
    {
        for (int classIndex = 0; classIndex < _stacks.Length; classIndex++)
        {
            into.AddRange(new ArraySegment<NativeMemoryManager>(_stacks[classIndex], 0, _counts[classIndex]));
            Array.Clear(_stacks[classIndex]);
            _counts[classIndex] = 0;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager[] Grow(int classIndex)
    {
        // The stacks only grow while the tier carves new blocks, so the steady state never gets here.
        NativeMemoryManager[] grown = new NativeMemoryManager[_stacks[classIndex].Length * 2];
        Array.Copy(_stacks[classIndex], grown, _stacks[classIndex].Length);
        _stacks[classIndex] = grown;
        return grown;
    }
}
