using System.Threading;

namespace Zipora.Buffers;

/// <summary>The arrays one thread keeps for one <see cref="TieredArrayPool"/>: a stack per size class.</summary>
internal sealed class ArrayThreadCache
{
    public ArrayThreadCache(TieredArrayPool pool, int[] capacities, bool closed)
    {
        Pool = pool;
        Owner = Thread.CurrentThread;
        Stacks = new ArrayStack[capacities.Length];
        for (int i = 0; i < capacities.Length; i++)
        {
            Stacks[i] = new ArrayStack(capacities[i]);
        }

        Closed = closed;
    }

    /// <summary>The pool the cache belongs to: the thread-static last-used cache may be another pool's.</summary>
    public readonly TieredArrayPool Pool;

    /// <summary>The thread that owns the cache; once it has exited, its arrays move to the depots.</summary>
    public readonly Thread Owner;

    public readonly ArrayStack[] Stacks;

    /// <summary>
    /// 1 while the owner is inside a rent or return. With the trimming thread's process-wide barrier this forms an
    /// asymmetric Dekker handshake: the owner pays two plain stores, the rare trim pays the barrier.
    /// </summary>
    public int InUse;

    /// <summary>Set while a trim empties the caches: the owner then goes to the depots and leaves its stacks alone.</summary>
    public volatile bool Closed;
}
