using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> whose trim had passed a tier when a block came back to
/// it: the trim walks the tiers one after another (small, medium, large, huge), and the block returned to the medium
/// tier while it gave back the large tier's region left its slab whole and free, counted against the cap, where the
/// rent looked no more. The rent was refused with the room in the pool, and nothing in use but itself
/// (MixedTiersAtTheCapSafetyTests: 4 KB rents refused in 1 to 3 of 15 runs, the trims' thread keeping the cap busy).
/// Here the large region's page drop is held while the block comes back, and then refused by the OS (so that the
/// region frees nothing and the room must come from the slab).
/// </summary>
public sealed class ReturnBehindTheTrimAtTheCapSafetyTests
{
    private const int RegionSize = 128 * 1024;

    [Fact]
    public void ARentAtTheCapTrimsAgainAfterABlockCameBackBehindItsTrim()
    {
        long region = LiveMappingsAllocator.MappedBytesOfOne(RegionSize);
        long slab = LiveMappingsAllocator.MappedBytesOfOne(4096);
        Assert.Equal(slab, LiveMappingsAllocator.MappedBytesOfOne(2048));
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, new FakeTimeProvider());
        options.AdaptiveCaches = false;
        options.MaxBytesInUse = region + slab;
        using var pool = new TieredMemoryPool(options);

        // A 4 KB block held on its slab, and a region cached: the cap is full.
        IMemoryOwner<byte> block = pool.Rent(4096);
        var returner = new Thread(() => pool.Rent(RegionSize).Dispose());
        returner.Start();
        Assert.True(returner.Join(TimeSpan.FromSeconds(10)), "the region's rent and return never ended");
        Assert.Equal(2, allocator.Live().Length);

        using var held = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        int armed = 1;
        allocator.AdviseOrRefuse = length =>
        {
            if ((long)length != region || Interlocked.Exchange(ref armed, 0) == 0)
            {
                return true;
            }

            held.Set();
            _ = proceed.Wait(TimeSpan.FromSeconds(10));
            return false;
        };

        // A 2 KB block needs a slab of its own: the rent's trim takes the region out of the cache, and its page drop
        // is held there, past the medium tier.
        Exception? refusal = null;
        IMemoryOwner<byte>? rented = null;
        var renter = new Thread(() =>
        {
            try
            {
                rented = pool.Rent(2048);
            }
            catch (InsufficientMemoryException error)
            {
                refusal = error;
            }
        });
        renter.Start();
        try
        {
            Assert.True(held.Wait(TimeSpan.FromSeconds(10)), $"the rent's trim dropped no region's pages\n{pool.GetStatistics()}");

            // Back to this thread's cache, behind the trim: its slab holds nothing else.
            block.Dispose();
        }
        finally
        {
            proceed.Set();
        }

        Assert.True(renter.Join(TimeSpan.FromSeconds(10)), "the rent never ended");
        rented?.Dispose();
        Assert.True(refusal is null, $"a 2 KB rent was refused with a whole slab free, its block returned while the rent's trim gave back the large tier: {refusal}\n{pool.GetStatistics()}");
    }
}
