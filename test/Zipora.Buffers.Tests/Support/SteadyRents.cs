using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>What a steady loop of rent, one write and dispose allocates, once warm.</summary>
internal static class SteadyRents
{
    /// <summary>
    /// Warms <paramref name="pool"/> up at <paramref name="size"/>, then counts the bytes <paramref name="rents"/> rents
    /// of it, each written once and disposed, allocate on this thread.
    /// </summary>
    public static long BytesAllocated(TieredMemoryPool pool, int size, int rents)
    {
        // Warm up past tiered compilation (methods move to tier 1 after 30 calls and a 100 ms delay), whose one-off
        // bookkeeping would otherwise be counted against the steady state.
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 1_000; i++)
            {
                pool.Rent(size).Dispose();
            }

            Thread.Sleep(150);
        }

        return ThreadAllocations.During(() =>
        {
            for (int i = 0; i < rents; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span[0] = (byte)i;
                owner.Dispose();
            }
        });
    }
}
