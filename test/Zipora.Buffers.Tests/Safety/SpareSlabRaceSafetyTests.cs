using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Threads that find a class's slab full at once each map a slab for it: the first becomes the class's current slab,
/// the others spares, each listed with its first block already cut for its renter. Those spares must be counted as the
/// current slab is (uncarved bytes, blocks waiting after the pool's disposal), give no block to two owners, and leave
/// nothing mapped once their blocks are back.
/// </summary>
public sealed class SpareSlabRaceSafetyTests
{
    private const int Renters = 4;
    private const int RentsPerRenter = 40;
    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(2);

    [Theory]
    [InlineData(4096, false)]
    [InlineData(4096, true)]
    [InlineData(100, false)]
    [InlineData(100, true)]
    public void RentersRacingToMapSlabsLeaveNothingMappedOnceAllIsBack(int size, bool disposeWhileRenting)
    {
        var clock = Stopwatch.StartNew();
        int rounds = 0;
        while (clock.Elapsed < s_budget || rounds < 10)
        {
            rounds++;
            var allocator = new LiveMappingsAllocator();
            var time = new FakeTimeProvider();
            var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));
            var held = new List<IMemoryOwner<byte>>[Renters];
            var stamps = new List<long>[Renters];
            using var start = new Barrier(Renters + 1);
            var threads = new Thread[Renters];
            for (int t = 0; t < Renters; t++)
            {
                int renter = t;
                held[renter] = new List<IMemoryOwner<byte>>(RentsPerRenter);
                stamps[renter] = new List<long>(RentsPerRenter);
                threads[renter] = new Thread(() =>
                {
                    start.SignalAndWait();
                    for (int i = 0; i < RentsPerRenter; i++)
                    {
                        IMemoryOwner<byte> owner;
                        try
                        {
                            owner = pool.Rent(size);
                        }
                        catch (ObjectDisposedException) when (disposeWhileRenting)
                        {
                            // The pool was disposed under this renter: it rents no more.
                            return;
                        }

                        long stamp = ((long)renter << 32) | (long)i;
                        SafetyCases.Stamp(owner, stamp, "a fresh rent");
                        held[renter].Add(owner);
                        stamps[renter].Add(stamp);
                    }
                });
                threads[renter].Start();
            }

            start.SignalAndWait();
            if (disposeWhileRenting)
            {
                Thread.SpinWait(Random.Shared.Next(0, 20_000));
                pool.Dispose();
            }

            foreach (Thread thread in threads)
            {
                thread.Join();
            }

            List<IMemoryOwner<byte>> owners = [.. held.SelectMany(static list => list)];
            List<long> allStamps = [.. stamps.SelectMany(static list => list)];
            string what = $"round {rounds}: {owners.Count} rents of {size} bytes by {Renters} racing threads (disposed while renting: {disposeWhileRenting}), {allocator.Live().Length} mappings live";
            SafetyCases.AssertDisjoint(owners, what);
            SafetyCases.AssertStamps(owners, allStamps, what);

            if (!disposeWhileRenting)
            {
                TierStatistics tier = size < 1024 ? pool.GetStatistics().Small : pool.GetStatistics().Medium;
                long blockBytes = owners[0].Memory.Length;
                Assert.True(tier.BytesInUse == owners.Count * blockBytes, $"{what}: {tier.BytesInUse} bytes counted in use\n{tier}");

                // Quiet, with every block cut still rented: the slabs mapped hold those blocks, the room left uncut,
                // and (small blocks) each full slab's tail too short for a block.
                long slabBytes = (long)allocator.Live()[0].Length;
                long slabs = allocator.Live().Length;
                long perSlab = slabBytes / blockBytes;
                long fullSlabs = owners.Count / perSlab;
                long expectedUncarved = (slabs * slabBytes) - (owners.Count * blockBytes) - (fullSlabs * (slabBytes % blockBytes));
                Assert.True(tier.BytesUncarved == expectedUncarved, $"{what}: {tier.BytesUncarved} bytes counted uncarved, where {slabs} slabs of {slabBytes} bytes, {owners.Count} blocks of {blockBytes} cut, leave {expectedUncarved}\n{tier}");
                Assert.True(tier.BytesRetained == 0, $"{what}: {tier.BytesRetained} bytes counted retained with every block cut in use\n{tier}");
                pool.Dispose();
            }

            owners.ForEach(static owner => owner.Dispose());
            SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
            TieredMemoryPoolStatistics drained = pool.GetStatistics();
            Assert.True(drained.Small.BytesUncarved == 0 && drained.Medium.BytesUncarved == 0, $"{what}: uncarved bytes left after every block came back to the disposed pool: small {drained.Small.BytesUncarved}, medium {drained.Medium.BytesUncarved}");
            allocator.AssertNoneLive($"{what}, every block back to the disposed pool and three delays on");
        }
    }
}
