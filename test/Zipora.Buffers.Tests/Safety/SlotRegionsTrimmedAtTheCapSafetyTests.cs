using System;
using System.Buffers;
using System.Diagnostics;
using System.Reflection;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> while a trim of the region tier that is not the
/// pool's (a large or huge rent's own, after its mapping was refused; an idle tick) gives back the regions it took out
/// of the threads' slots. It took them all out under its trim lock, then gave them back one at a time outside it:
/// those behind the first were in no slot, in no cache and not yet on their way out, where the rent's trim of the pool
/// could not find them, nor its wait for releases under way see them. The rent was refused with their room on its way
/// (MixedTiersAtTheCapSafetyTests: 4 KB rents refused with three large regions mapped and two in use at most). Here the
/// first region's page drop is held, so that the others wait behind it for as long as the test likes.
/// </summary>
public sealed class SlotRegionsTrimmedAtTheCapSafetyTests
{
    private const int RegionSize = 128 * 1024;

    [Fact]
    public void ARentAtTheCapWaitsForSlotRegionsAnotherTrimGivesBack()
    {
        TimeSpan hold = TimeSpan.FromMilliseconds(1_500);
        long unit = LiveMappingsAllocator.MappedBytesOfOne(RegionSize);
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, new FakeTimeProvider());
        options.AdaptiveCaches = false;
        options.MaxBytesInUse = 2 * unit;
        using var pool = new TieredMemoryPool(options);

        // Two threads each park a region in their slot and stay alive: the cap is full, with nothing in use.
        using var done = new ManualResetEventSlim();
        using var parked = new CountdownEvent(2);
        var owners = new Thread[2];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = new Thread(() =>
            {
                pool.Rent(RegionSize).Dispose();
                parked.Signal();
                done.Wait();
            });
            owners[i].Start();
        }

        using var held = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        try
        {
            Assert.True(parked.Wait(TimeSpan.FromSeconds(10)), "the threads never parked their regions");
            Assert.Equal(2, allocator.Live().Length);

            int armed = 1;
            allocator.BeforeAdvise = advice =>
            {
                if (Interlocked.Exchange(ref armed, 0) == 1)
                {
                    held.Set();
                    _ = proceed.Wait(TimeSpan.FromSeconds(10));
                }
            };

            // The large tier's own trim, as a large rent runs it after its mapping was refused: outside the pool's.
            var tier = (BufferTier)typeof(TieredMemoryPool).GetField("_large", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;
            var trimmer = new Thread(tier.Trim);
            trimmer.Start();
            Assert.True(held.Wait(TimeSpan.FromSeconds(10)), $"the tier's trim dropped no region's pages\n{pool.GetStatistics()}");

            // A 4 KB block needs a slab of its own: room one of the two regions' going makes.
            Exception? refusal = null;
            IMemoryOwner<byte>? rented = null;
            TimeSpan waited = TimeSpan.Zero;
            var clock = Stopwatch.StartNew();
            var renter = new Thread(() =>
            {
                try
                {
                    rented = pool.Rent(4096);
                }
                catch (InsufficientMemoryException error)
                {
                    refusal = error;
                }

                waited = clock.Elapsed;
            });
            renter.Start();
            _ = renter.Join(hold);
            proceed.Set();
            Assert.True(renter.Join(TimeSpan.FromSeconds(10)) && trimmer.Join(TimeSpan.FromSeconds(10)), "the rent or the trim never ended");
            rented?.Dispose();

            Assert.True(refusal is null, $"a 4 KB rent was refused after {waited.TotalMilliseconds:F0} ms while a trim gave back two slots' regions, the second waiting behind the first's held page drop: {refusal}\n{pool.GetStatistics()}");
        }
        finally
        {
            proceed.Set();
            done.Set();
            Array.ForEach(owners, static thread => thread.Join());
        }
    }
}
