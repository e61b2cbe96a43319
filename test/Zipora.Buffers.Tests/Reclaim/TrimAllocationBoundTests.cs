using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim runs where managed memory is short (memory pressure, the GC near its hard limit), so what it allocates must
/// not grow with what the pool caches. Its lists and tables of the free blocks cost 28 bytes of managed memory a block
/// (28,008,376 bytes measured for a million cached 64-byte blocks, 2,801,208 for 100,000), and a pressure trim meant
/// to give the heap room ran out of it and kept every block. It now sorts the blocks where the depots hold them.
/// </summary>
public sealed class TrimAllocationBoundTests
{
    private const int Blocks = 1_000_000;

    // What one trim may allocate whatever the pool caches: the sweeper's tables, made at the first sweep and sized for a
    // slab's blocks (8 KB for 64-byte blocks, 32 KB for 16-byte ones), and a thread's grown cache slots it replaces.
    private const long MostBytes = 64 * 1024;

    [Fact]
    public void ATrimOfAMillionCachedBlocksAllocatesAtMost64KB()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) });
        var owners = new IMemoryOwner<byte>[Blocks];
        for (int i = 0; i < owners.Length; i++)
        {
            // Two classes, the 16-byte one whose slabs hold the most blocks (the sweeper's largest table).
            owners[i] = pool.Rent(i % 2 == 0 ? 16 : 64);
            owners[i].Memory.Span[0] = 1;
        }

        // All but one block in every 8,192 of a class: some slabs all free (let go of), the others with one block
        // rented (swept: their free pages dropped), so the trim takes every path it has.
        for (int i = 0; i < owners.Length; i++)
        {
            if (i % 16_384 >= 2)
            {
                owners[i].Dispose();
            }
        }

        long retainedBefore = pool.GetStatistics().Small.BytesRetained;
        long allocated = ThreadAllocations.During(pool.Trim);
        TierStatistics after = pool.GetStatistics().Small;
        TestContext.Current.SendDiagnosticMessage($"a trim of {Blocks} cached blocks ({retainedBefore} bytes retained) allocated {allocated} bytes; {after.BytesRetained} bytes retained after");
        Assert.True(allocated <= MostBytes, $"a trim of {Blocks} cached blocks allocated {allocated} bytes of managed memory");
        Assert.True(after.BytesRetained == 0, $"the trim left {after.BytesRetained} of {retainedBefore} bytes retained");
        for (int i = 0; i < owners.Length; i += 16_384)
        {
            owners[i].Dispose();
            owners[i + 1].Dispose();
        }
    }
}
