using System;
using System.Buffers;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab mapped for a rent is that rent's: a trim running meanwhile (another thread's <see cref="TieredMemoryPool.Trim"/>,
/// a pressure trim, or the trim a rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> makes to find room) never
/// lets it go before its first block is cut. A slab let go of with nothing cut sent its renter back to map another: one
/// rent, two mappings, and at the cap two renters could trim each other's fresh slabs until one was refused with room
/// enough for both.
/// </summary>
public sealed class FreshSlabTrimRaceSafetyTests
{
    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(2);

    // Past the budget while too few rents met a trimmed tier (a loaded machine): up to this long in all. A rent meets
    // a trimmed tier when the two threads interleave, which on a busy host's shared cores they seldom do: beside other
    // test runs (load average 25-30 on 2 cores) one case mapped 64 slabs in 8 s and failed here, the others 101 in
    // 3.7-7.6 s, and beside two busy loops more the three took 14, 18.5 and 26.4 s. Longer only where the host is
    // that busy: it stops at 100.
    private static readonly TimeSpan s_longest = TimeSpan.FromSeconds(60);
    private const int EnoughSlabsMapped = 100;

    [Theory]
    [InlineData(100, OwnerMode.Default)]
    [InlineData(4096, OwnerMode.Default)]
    [InlineData(4096, OwnerMode.ReuseOwners)]
    public void ARentMapsOneSlabAtMostWhileAnotherThreadTrimsWithoutPause(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode, new FakeTimeProvider());
        long slabBytes = SlabBytesOf(pool, size);
        bool stop = false;
        long trims = 0;
        var trimmer = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                pool.Trim();
                trims++;
            }
        });
        trimmer.Start();

        long rents = 0;
        long mappedTwice = 0;
        long slabsMapped = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            while ((clock.Elapsed < s_budget || slabsMapped <= EnoughSlabsMapped) && clock.Elapsed < s_longest && mappedTwice == 0)
            {
                long before = TierOf(pool, size).BytesAllocated;
                IMemoryOwner<byte> owner = pool.Rent(size);
                long mapped = (TierOf(pool, size).BytesAllocated - before) / slabBytes;
                owner.Memory.Span[0] = 1;
                owner.Dispose();
                rents++;
                slabsMapped += mapped;
                mappedTwice += mapped > 1 ? 1 : 0;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            trimmer.Join();
        }

        string what = $"{rents} rents of {size} bytes ({mode}) against {trims} trims mapped {slabsMapped} slabs of {slabBytes} bytes in {clock.Elapsed.TotalSeconds:F1} s";
        TestContext.Current.TestOutputHelper?.WriteLine(what);
        Assert.True(mappedTwice == 0, $"{what}; a rent mapped more than one: a trim let go of its slab before its first block was cut");
        Assert.True(mappedTwice != 0 || slabsMapped > EnoughSlabsMapped, $"{what}: too few rents met a trimmed tier for the race to be tried");
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    private static TierStatistics TierOf(TieredMemoryPool pool, int size) =>
        size < 1024 ? pool.GetStatistics().Small : pool.GetStatistics().Medium;

    /// <summary>The bytes of one slab of the class, from the first rent of a fresh pool.</summary>
    private static long SlabBytesOf(TieredMemoryPool pool, int size)
    {
        using (pool.Rent(size))
        {
        }

        long slabBytes = TierOf(pool, size).BytesAllocated;
        Assert.True(slabBytes > 0, "the first rent of a fresh pool mapped no slab");
        pool.Trim();
        return slabBytes;
    }
}
