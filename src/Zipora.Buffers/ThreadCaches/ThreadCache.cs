using System;
using System.Runtime.CompilerServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A slab tier's cache for one thread (small or medium): a stack of free blocks per size class, with the thread's counters.</summary>
/// <remarks>
/// Only the owning thread writes it; a trim or the tier's disposal drains it after the handshake on
/// <see cref="HandshakeCache.InUse"/>. The tier is named by <see cref="ThreadOwnedCache.RegistryId"/>, not referenced: the
/// thread-static last cache outlives a dropped pool, and must not keep its tier (or its memory) reachable. The stacks
/// live inline, so the fast path follows one reference from the cache to the slots of its class.
/// </remarks>
internal sealed class ThreadCache : HandshakeCache
{
    private ClassStacks _stacks;

    /// <param name="maxCapacities">The most blocks each class may ever hold: the slots start at this or <see cref="ClassStack.InitialSlots"/>, the fewer.</param>
    /// <param name="capacities">Where each class's capacity starts.</param>
    public ThreadCache(ReadOnlySpan<int> maxCapacities, ReadOnlySpan<int> capacities)
    {
        for (int classIndex = 0; classIndex < maxCapacities.Length; classIndex++)
        {
            ref ClassStack stack = ref StackOf(classIndex);
            stack.Items = InitialSlotsFor(maxCapacities[classIndex]);
            stack.SetCapacity(capacities[classIndex]);
        }
    }

    /// <summary>The slots a stack of a class that may hold <paramref name="maxCapacity"/> blocks starts with, and starts over with after a trim.</summary>
    public static NativeMemoryManager[] InitialSlotsFor(int maxCapacity) =>
        maxCapacity == 0 ? ClassStack.NoSlots : new NativeMemoryManager[Math.Min(maxCapacity, ClassStack.InitialSlots)];

    /// <summary>The stack of a class; <paramref name="classIndex"/> must be below the tier's class count, which its size checks prove.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ClassStack StackOf(int classIndex) =>
        ref Unsafe.Add(ref Unsafe.As<ClassStacks, ClassStack>(ref _stacks), classIndex);

    /// <summary>The slots of class <paramref name="classIndex"/> up to its push limit, free ones included.</summary>
    public Span<NativeMemoryManager> Slots(int classIndex)
    {
        ref ClassStack stack = ref StackOf(classIndex);
        return stack.Items.AsSpan(0, stack.PushLimit);
    }
}
