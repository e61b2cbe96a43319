using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>Finds the rent that gets a given block back: how the safety tests reach a block's next renter.</summary>
public static class RentedAgain
{
    /// <summary>
    /// Rents <paramref name="size"/> bytes from <paramref name="pool"/> up to <paramref name="probes"/> times, each
    /// rent added to <paramref name="renters"/> (the caller disposes them), until one overlaps <paramref name="block"/>.
    /// </summary>
    /// <returns>The renter that got the block, or <see langword="null"/> when none did.</returns>
    public static IMemoryOwner<byte>? Find(MemoryPool<byte> pool, int size, OwnerRange block, List<IMemoryOwner<byte>> renters, int probes)
    {
        for (int i = 0; i < probes; i++)
        {
            IMemoryOwner<byte> renter = pool.Rent(size);
            renters.Add(renter);
            if (SafetyCases.RangeOf(renter).Overlaps(block))
            {
                return renter;
            }
        }

        return null;
    }
}
