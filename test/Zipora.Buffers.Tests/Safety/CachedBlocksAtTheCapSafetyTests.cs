using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// At <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> a rent whose class has free blocks only in another thread's
/// cache is served by one of them. Its own cache and the class's depot were empty, and the one slab (all the cap holds)
/// full, so it asked for a mapping; the cap refused it and the pool trimmed: the trim moved the other thread's free
/// blocks to the depot (their slab pinned by the one block still rented) but could free no slab. The rent then threw,
/// with fifteen free blocks of its class in the depot.
/// </summary>
public sealed class CachedBlocksAtTheCapSafetyTests
{
    [Fact]
    public void ARentAtTheCapTakesAFreeBlockAnotherThreadCachedWhenNoSlabCanBeMapped()
    {
        const int size = 4096;
        const int slabBytes = 64 * 1024;
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.AdaptiveCaches = false;

        // Room in the other thread's cache for every free block of the slab (an overflow would move some to the depot).
        options.ThreadCacheMaxBuffers = 256;
        options.ThreadCacheMaxBytes = 64 * 1024 * 1024;
        options.MaxBytesInUse = slabBytes;
        using var pool = new TieredMemoryPool(options);

        // Another thread fills the slab, keeps one block, and caches the rest; it lives on (an exiting thread's cache
        // goes to the depots) until the rent is done.
        int blocks = slabBytes / size;
        IMemoryOwner<byte>? kept = null;
        using var cached = new ManualResetEventSlim();
        using var done = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            var owners = new List<IMemoryOwner<byte>>();
            for (int i = 0; i < blocks; i++)
            {
                owners.Add(pool.Rent(size));
            }

            kept = owners[0];
            owners.GetRange(1, owners.Count - 1).ForEach(static owner => owner.Dispose());
            cached.Set();
            done.Wait();
        });
        other.Start();
        cached.Wait();
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        long mapped = before.Medium.BytesAllocated;
        Assert.True(mapped == slabBytes, $"the other thread's rents mapped {mapped} bytes, not one slab of {slabBytes}\n{before}");

        IMemoryOwner<byte> rented;
        try
        {
            rented = pool.Rent(size);
        }
        finally
        {
            done.Set();
            other.Join();
        }

        using IMemoryOwner<byte> _ = rented;
        SafetyCases.AssertDisjoint([kept!, rented], "the rent at the cap and the block still held");
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(after.MmapCalls == before.MmapCalls, $"the rent at the cap mapped memory past the cap\n{after}");
        Assert.True(after.RentsRefused == 0, $"the rent its class's depot served after its slab was refused counted as refused\n{after}");
        kept!.Dispose();
    }
}
