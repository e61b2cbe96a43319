using System;
using System.Buffers;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> while a region is halfway out of the pool: a return
/// over the region cache's limit took the oldest region out of the cache and was giving it back (its pages being
/// dropped, outside the tier's lock), still counted against the cap. The rent's trim could not reach it and freed the
/// rest, and the rent was refused though its room was coming (the race MixedTiersAtTheCapSafetyTests met 0 to 3 times in
/// 6-8 million rents). Here the release is held in the allocator's advice until the test lets it go on.
/// </summary>
public sealed class RegionReleaseAtTheCapSafetyTests
{
    private const int RegionSize = 128 * 1024;

    [Fact]
    public void ARentAtTheCapWaitsForARegionOnItsWayOutOfThePool()
    {
        (Exception? refusal, TimeSpan waited, TieredMemoryPoolStatistics after) = RentWhileAReleaseIsHeld(TimeSpan.FromMilliseconds(300));

        Assert.True(refusal is null, $"the rent was refused after {waited.TotalMilliseconds:F0} ms, with a region of the room it asked for on its way out: {refusal}\n{after}");
        Assert.True(waited >= TimeSpan.FromMilliseconds(250), $"the rent was served in {waited.TotalMilliseconds:F0} ms, before the held release ended: the cap was not full\n{after}");
    }

    [Fact]
    public void ARentAtTheCapGivesUpOnAReleaseThatDoesNotEnd()
    {
        // A release stopped for good (a thread stopped in a debugger) must not hang the rent: each reservation waits a
        // second at most, and a region rent tries twice (its tier trims itself between), so about 2 s here; well under
        // the 8 s the release is held, with room for a loaded host.
        (Exception? refusal, TimeSpan waited, TieredMemoryPoolStatistics after) = RentWhileAReleaseIsHeld(TimeSpan.FromSeconds(8));

        Assert.True(refusal is InsufficientMemoryException, $"a rent at the cap with the room on its way out for 8 s ended with {refusal?.GetType().Name ?? "a buffer"} after {waited.TotalMilliseconds:F0} ms\n{after}");
        Assert.InRange(waited, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(6));
    }

    [Fact]
    public void ARentAtTheCapThatNoReleaseUnderWayCouldServeIsRefusedWithoutWaitingForThem()
    {
        // Four regions' room under a cap of three: whatever is on its way out, it cannot fit. It waited for the release
        // all the same, its full second per reservation (busy traffic over a cap, such as gRPC calls past it, was
        // refused only after other threads' releases had kept each refused rent waiting).
        (Exception? refusal, TimeSpan waited, TieredMemoryPoolStatistics after) = RentWhileAReleaseIsHeld(TimeSpan.FromSeconds(3), regionsAsked: 4);

        Assert.True(refusal is InsufficientMemoryException, $"a rent of four regions under a cap of three ended with {refusal?.GetType().Name ?? "a buffer"}\n{after}");
        Assert.True(waited < TimeSpan.FromMilliseconds(500), $"a rent no release could serve was refused after {waited.TotalMilliseconds:F0} ms, waiting for a release under way\n{after}");
    }

    [Fact]
    public void ARefusalAtTheCapComesAtOnceAfterEveryKindOfRelease()
    {
        // Each way a region leaves the tier marks it on its way out until it is gone: one mark left over would make
        // every later refusal at the cap wait its full second for nothing.
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = PoolCappedAtThreeRegions(allocator, time);
        int advice = 0;
        allocator.BeforeAdvise = _ => Interlocked.Increment(ref advice);

        for (int round = 0; round < 3; round++)
        {
            // Evictions on return (a slot, then a one-region cache), the ticks' page drops and unmaps, a trim.
            SafetyCases.RentAndReturnOnAnotherThread(pool, RegionSize, 3);
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 0.8);
            SafetyCases.RentAndReturnOnAnotherThread(pool, RegionSize, 3);
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.3);
            SafetyCases.RentAndReturnOnAnotherThread(pool, RegionSize, 2);
            pool.Trim();
        }

        Assert.True(advice > 0 && allocator.Live().Length < 3, $"the rounds dropped pages {advice} times and left {allocator.Live().Length} mappings: not every kind of release ran\n{pool.GetStatistics()}");
        IMemoryOwner<byte>[] held = [pool.Rent(RegionSize), pool.Rent(RegionSize), pool.Rent(RegionSize)];
        var clock = Stopwatch.StartNew();
        _ = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(RegionSize));
        TimeSpan refusedAfter = clock.Elapsed;
        Array.ForEach(held, static owner => owner.Dispose());
        Assert.True(refusedAfter < TimeSpan.FromMilliseconds(500), $"a refusal at the cap with nothing on its way out took {refusedAfter.TotalMilliseconds:F0} ms\n{pool.GetStatistics()}");
    }

    /// <summary>
    /// Three regions fill the cap; their returns on another thread leave one in that thread's slot, one cached, and one
    /// evicted (the cache holds one), whose page drop is held for <paramref name="hold"/>. Meanwhile a rent asks for a
    /// region of all three's room (or of <paramref name="regionsAsked"/> regions'). Returns how it ended, after how long,
    /// and the pool's figures once all is back.
    /// </summary>
    private static (Exception? Refusal, TimeSpan Waited, TieredMemoryPoolStatistics After) RentWhileAReleaseIsHeld(TimeSpan hold, int regionsAsked = 3)
    {
        long unit = LiveMappingsAllocator.MappedBytesOfOne(RegionSize);
        int wholeCap = 3 * RegionSize;
        long wholeCapUnit = LiveMappingsAllocator.MappedBytesOfOne(wholeCap);
        Assert.True(wholeCapUnit > 2 * unit && wholeCapUnit <= 3 * unit, $"a {wholeCap}-byte rent maps {wholeCapUnit} bytes, not more than two {RegionSize}-byte ones ({unit}) and at most three");

        var allocator = new LiveMappingsAllocator();
        using TieredMemoryPool pool = PoolCappedAtThreeRegions(allocator, new FakeTimeProvider());

        using var held = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        int armed = 0;
        allocator.BeforeAdvise = _ =>
        {
            if (Interlocked.Exchange(ref armed, 0) == 1)
            {
                held.Set();
                proceed.Wait();
            }
        };

        var returner = new Thread(() =>
        {
            IMemoryOwner<byte>[] owners = [pool.Rent(RegionSize), pool.Rent(RegionSize), pool.Rent(RegionSize)];
            owners[0].Dispose();
            owners[1].Dispose();
            Volatile.Write(ref armed, 1);
            owners[2].Dispose();
        });
        returner.Start();
        bool evicted = held.Wait(TimeSpan.FromSeconds(10));
        Assert.True(evicted, $"no return let a region go: three returns with a slot and a one-region cache\n{pool.GetStatistics()}");

        var rent = new RentOnItsOwnThread(pool, regionsAsked * RegionSize);
        _ = rent.Join(hold);
        proceed.Set();
        Assert.True(rent.Join(TimeSpan.FromSeconds(10)) && returner.Join(TimeSpan.FromSeconds(10)), "the rent or the returns never ended");

        rent.ReturnRented();
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(after.BytesInUse == 0, $"{after.BytesInUse} bytes in use with every buffer back\n{after}");
        return (rent.Refusal, rent.Waited, after);
    }

    /// <summary>
    /// A pool mapping through <paramref name="allocator"/> whose cap holds three regions of <see cref="RegionSize"/>,
    /// its region cache one (adaptive caches off, so returns past it evict).
    /// </summary>
    private static TieredMemoryPool PoolCappedAtThreeRegions(LiveMappingsAllocator allocator, FakeTimeProvider time)
    {
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, time);
        options.AdaptiveCaches = false;
        options.RegionCacheMaxCount = 1;
        options.MaxBytesInUse = 3 * LiveMappingsAllocator.MappedBytesOfOne(RegionSize);
        return new TieredMemoryPool(options);
    }
}
