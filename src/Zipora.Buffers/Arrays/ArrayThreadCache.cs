using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The arrays one thread keeps for one <see cref="TieredArrayPool"/>: a stack per size class, and the thread's counters.</summary>
/// <remarks>
/// Only the owning thread writes it, except a trim, which takes the slots of the stacks it empties away (see
/// <see cref="NoStack"/>, which sends the owner to the depot) and empties them after the handshake on
/// <see cref="InUse"/>. The stacks live inline, so the fast path follows one reference from the cache to the slots
/// of the class.
/// </remarks>
internal sealed class ArrayThreadCache
{
    /// <summary>The slots of a class the thread does not cache, or whose stack a trim has taken away: no room, nothing to pop.</summary>
    public static readonly byte[][] NoStack = [];

    /// <summary>The pool the cache belongs to: the thread-static last-used cache may be another pool's.</summary>
    public readonly TieredArrayPool Pool;

    /// <summary>The thread that owns the cache; once it has exited, its arrays move to the depots.</summary>
    public readonly Thread Owner = Thread.CurrentThread;

    /// <summary>
    /// 1 while the owner is inside a rent or return. With the trimming thread's process-wide barrier this forms an
    /// asymmetric Dekker handshake: the owner pays two plain stores, the rare trim pays the barrier.
    /// </summary>
    public int InUse;

    /// <summary>
    /// Per class: arrays the depot moved into the stack or handed out directly, minus those the stack moved to the
    /// depot and those returned past the stack (while a trim empties it). Rents that hit are then
    /// <c>Returns - Count + NetTransfers - Dropped</c>, so the fast rent counts nothing. Only the owner writes it, so a
    /// owner still counts here while a trim empties the stack.
    /// </summary>
    public ArrayClassValues<long> NetTransfers;

    /// <summary>Per class: arrays a trim took from the stack; only the trim writes it, while the owner stays out.</summary>
    public ArrayClassValues<long> Dropped;

    /// <summary>Per class: rents that found no array and allocated one.</summary>
    public ArrayClassValues<long> Misses;

    private ArrayClassStacks _stacks;

    /// <summary>Creates the cache with an empty stack per class, of the capacity the pool gives the class.</summary>
    public ArrayThreadCache(TieredArrayPool pool, int[] capacities)
    {
        Pool = pool;
        for (int classIndex = 0; classIndex < capacities.Length; classIndex++)
        {
            _stacks[classIndex].Items = capacities[classIndex] > 0 ? new byte[capacities[classIndex]][] : NoStack;
        }
    }

    /// <summary>The stack of a class; <paramref name="classIndex"/> must be below <see cref="ArraySizeClasses.Count"/>, which the pool's length check proves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ArrayClassStack StackOf(int classIndex) =>
        ref Unsafe.Add(ref Unsafe.As<ArrayClassStacks, ArrayClassStack>(ref _stacks), classIndex);

}
