using System.Buffers;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A block taken away from a segment, to give back to its pool.</summary>
/// <param name="Owner">What was rented: a pool block itself (a <see cref="TieredMemoryPool"/>'s owner-free rent) or another pool's owner.</param>
/// <param name="Generation">The pool block's generation when it was attached to the segment.</param>
/// <param name="Capacity">The bytes the segment held.</param>
internal readonly record struct BlockRelease(IMemoryOwner<byte> Owner, int Generation, int Capacity)
{
    /// <summary>
    /// Gives the block back, unless the pool already took it: a segment's buffer kept alive by a user's finalizer after
    /// the pool reclaimed its blocks as leaked must not return a block that has gone to another renter since (as
    /// <see cref="BlockOwner"/> must not).
    /// </summary>
    public void Dispose()
    {
        if (Owner is not NativeMemoryManager block)
        {
            Owner.Dispose();
        }
        else if (block.Generation == Generation)
        {
            // The sealed class called directly: no interface dispatch on every segment's return.
            block.Dispose();
        }
    }
}
