using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A block returned while another trim had its slab tier's caches closed goes straight to the class's depot, counted as
/// a return first (so a trim dates it as just returned). Counted and put in two steps, it was counted where a rent at
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> read the pool's activity, and put where that rent's trim had
/// already drained the depot: the trim found nothing, and every later rent at the cap saw no activity since it and
/// rested, refused, with the block's slab whole and free and nothing else in use. The returning thread must stand
/// between the two steps for a whole trim, and no allocator call lies there to hold it: measured with a 500 ms sleep put
/// there for the experiment only, both rents below were refused (the one during the sleep, and the one after the return
/// had ended, with the block in the depot and nothing in use but the 2 KB block: 6 of 6 runs); with the count and the
/// put made under the depot's lock, which the trim's drain takes (the sleep between them there), none of 6. Without the
/// sleep this test passes either way: it pins the path, not the timing.
/// </summary>
public sealed class ReturnDuringAnotherTrimAtTheCapSafetyTests
{
    [Fact]
    public void ARentAtTheCapFindsABlockReturnedWhileAnotherTrimHadTheCachesClosed()
    {
        long slab = LiveMappingsAllocator.MappedBytesOfOne(4096);
        Assert.Equal(slab, LiveMappingsAllocator.MappedBytesOfOne(2048));
        Assert.Equal(slab, LiveMappingsAllocator.MappedBytesOfOne(1024));
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, new FakeTimeProvider());
        options.AdaptiveCaches = false;
        options.MaxBytesInUse = 2 * slab;
        using var pool = new TieredMemoryPool(options);

        // A 4 KB block on a slab of its own, and a free 2 KB block on another: the cap is full.
        IMemoryOwner<byte> block = pool.Rent(4096);
        pool.Rent(2048).Dispose();

        // The pool's trim lets go of the 2 KB slab and is held in its page drop, the medium tier's caches closed.
        using var held = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        int armed = 1;
        allocator.AdviseOrRefuse = length =>
        {
            if ((long)length == slab && Interlocked.Exchange(ref armed, 0) == 1)
            {
                held.Set();
                _ = proceed.Wait(TimeSpan.FromSeconds(10));
            }

            return true;
        };
        var trimmer = new Thread(pool.Trim);
        trimmer.Start();
        Thread returner;
        try
        {
            Assert.True(held.Wait(TimeSpan.FromSeconds(10)), $"the trim dropped no slab's pages\n{pool.GetStatistics()}");

            // The 4 KB block comes back on a thread of its own, to the depot: the caches are closed.
            returner = new Thread(block.Dispose);
            returner.Start();
            Assert.True(SpinWait.SpinUntil(() => pool.GetStatistics().Medium.Returns == 2, TimeSpan.FromSeconds(10)), $"the return was never counted\n{pool.GetStatistics()}");
        }
        finally
        {
            proceed.Set();
        }

        Assert.True(trimmer.Join(TimeSpan.FromSeconds(10)), "the trim never ended");

        // A slab of the room the 2 KB one left, and then a 1 KB block: it needs the 4 KB block's slab.
        using IMemoryOwner<byte> filler = pool.Rent(2048);
        InsufficientMemoryException? whileReturning = RentRefusal(pool, 1024);
        Assert.True(returner.Join(TimeSpan.FromSeconds(10)), "the return never ended");
        InsufficientMemoryException? afterReturning = RentRefusal(pool, 1024);
        Assert.True(
            whileReturning is null && afterReturning is null,
            $"a 1 KB rent was refused with the 4 KB block's slab free, the block returned while another trim had the caches closed; during that return: {whileReturning?.Message ?? "served"}; after it: {afterReturning?.Message ?? "served"}\n{pool.GetStatistics()}");
    }

    /// <summary>Rents <paramref name="size"/> bytes and returns the buffer; what refused it, if anything.</summary>
    private static InsufficientMemoryException? RentRefusal(TieredMemoryPool pool, int size)
    {
        try
        {
            pool.Rent(size).Dispose();
            return null;
        }
        catch (InsufficientMemoryException error)
        {
            return error;
        }
    }
}
