using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> of a pool of pinned arrays while another thread is
/// unmapping a pinned array that waited out its delay: taken off the list of unmaps, it still counts against the cap
/// until its unmap ends. The rent found it counted, could neither let go of it (not on the list) nor see it on its way
/// out, and was refused at once though the room was coming: PinnedMixedTiersAtTheCapSafetyTests on a loaded host (two
/// busy loops beside it) refused 1 to 20 rents in 4 of 10 runs, where the unmapping thread had been preempted. Here
/// the unmap is held in the allocator until the test lets it go on.
/// </summary>
public sealed class PinnedReleaseUnderWayAtTheCapSafetyTests
{
    private const int RegionSize = 128 * 1024;

    // Of another length than the regions waiting, so that the rent cannot take a waiting one back.
    private const int RentSize = 100_000;

    [Fact]
    public void ARentAtThePinnedCapWaitsForAnArrayAnotherThreadIsUnmapping()
    {
        var allocator = new HeldPinnedArrayAllocator();
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, time);
        options.PageAllocator = allocator;
        options.FallbackPageAllocator = null;
        options.MaxBytesInUse = 2 * RegionSize;
        using var pool = new TieredMemoryPool(options);

        // One region in use, the other let go of by a trim: its pages cannot be dropped, so it waits out the delay, counted.
        using IMemoryOwner<byte> kept = pool.Rent(RegionSize);
        pool.Rent(RegionSize).Dispose();
        pool.Trim();
        TieredMemoryPoolStatistics before = pool.GetStatistics();
        Assert.True(before.BytesAwaitingRelease == RegionSize, $"the trim left {before.BytesAwaitingRelease} bytes waiting, not the {RegionSize} of the region returned\n{before}");

        // The tick after the delay unmaps it, and is held there.
        allocator.HoldNextUnmap();
        var ticker = new Thread(() => SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.5));
        ticker.Start();
        Assert.True(allocator.Held.Wait(TimeSpan.FromSeconds(10)), $"no tick unmapped the waiting region\n{pool.GetStatistics()}");

        var rent = new RentOnItsOwnThread(pool, RentSize);
        _ = rent.Join(TimeSpan.FromMilliseconds(300));
        allocator.Proceed.Set();
        Assert.True(rent.Join(TimeSpan.FromSeconds(10)) && ticker.Join(TimeSpan.FromSeconds(10)), "the rent or the tick never ended");

        rent.ReturnRented();
        Assert.True(rent.Refusal is null, $"a {RentSize}-byte rent was refused after {rent.Waited.TotalMilliseconds:F0} ms with {RegionSize} bytes of its room being unmapped by another thread: {rent.Refusal}\n{pool.GetStatistics()}");
        Assert.True(rent.Waited >= TimeSpan.FromMilliseconds(250), $"the rent was served in {rent.Waited.TotalMilliseconds:F0} ms, before the held unmap ended: the cap was not full\n{pool.GetStatistics()}");
    }

    [Fact]
    public void ARefusalAtThePinnedCapComesAtOnceAfterEveryKindOfUnmap()
    {
        // Each array taken off the list of unmaps is marked on its way out until its unmap ends, also when the OS refused
        // it or the allocator threw: one mark left over would make every later refusal at the cap wait its full second.
        var allocator = new HeldPinnedArrayAllocator();
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, time);
        options.PageAllocator = allocator;
        options.FallbackPageAllocator = null;
        options.AdaptiveCaches = false;
        options.RegionCacheMaxCount = 1;
        options.MaxBytesInUse = 3 * RegionSize;
        using var pool = new TieredMemoryPool(options);

        for (int round = 0; round < 3; round++)
        {
            // Returns past the slot and the one-region cache leave an array waiting, counted; a rent of another length
            // at the cap trims the rest onto the list and lets go of what it needs there, its first unmap refused (in
            // the last round thrown, an allocator's bug the rent passes on, with that array lost, counted for good).
            SafetyCases.RentAndReturnOnAnotherThread(pool, RegionSize, 3);
            if (round < 2)
            {
                allocator.RefuseNextUnmap();
                pool.Rent(RentSize).Dispose();
            }
            else
            {
                allocator.ThrowAtNextUnmap();
                _ = Assert.Throws<InvalidOperationException>(() => pool.Rent(RentSize).Dispose());
            }

            // The ticks past the delay unmap what waits.
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.3);
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.3);
            pool.Trim();
        }

        Assert.True(allocator.Refused == 2 && allocator.Thrown == 1, $"{allocator.Refused} unmaps refused of 2 and {allocator.Thrown} thrown of 1: not every kind of unmap ran\n{pool.GetStatistics()}");
        var held = new List<IMemoryOwner<byte>>();
        TimeSpan refusedAfter = TimeSpan.MaxValue;
        while (held.Count < 4)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                held.Add(pool.Rent(RegionSize));
            }
            catch (InsufficientMemoryException)
            {
                refusedAfter = clock.Elapsed;
                break;
            }
        }

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        held.ForEach(static owner => owner.Dispose());
        Assert.True(held.Count < 4, $"{held.Count} regions rented under a cap of three\n{after}");
        Assert.True(refusedAfter < TimeSpan.FromMilliseconds(500), $"a refusal at the cap with nothing on its way out took {refusedAfter.TotalMilliseconds:F0} ms\n{after}");
    }

    /// <summary>Pinned arrays whose next unmap, once armed, waits until the test lets it go on, is refused, or throws.</summary>
    private sealed class HeldPinnedArrayAllocator : Native.PinnedArrayPageAllocator
    {
        private const int Hold = 1;
        private const int Refuse = 2;
        private const int Throw = 3;
        private int _armed;
        private int _refused;
        private int _thrown;

        public ManualResetEventSlim Held { get; } = new();

        public ManualResetEventSlim Proceed { get; } = new();

        public int Refused => Volatile.Read(ref _refused);

        public int Thrown => Volatile.Read(ref _thrown);

        public void HoldNextUnmap() => Volatile.Write(ref _armed, Hold);

        public void RefuseNextUnmap() => Volatile.Write(ref _armed, Refuse);

        public void ThrowAtNextUnmap() => Volatile.Write(ref _armed, Throw);

        public override bool Unmap(nint address, nuint length)
        {
            switch (Interlocked.Exchange(ref _armed, 0))
            {
                case Hold:
                    Held.Set();
                    Proceed.Wait();
                    break;
                case Refuse:
                    _ = Interlocked.Increment(ref _refused);
                    return false;
                case Throw:
                    _ = Interlocked.Increment(ref _thrown);
                    throw new InvalidOperationException("an allocator's bug, thrown from an unmap");
            }

            return base.Unmap(address, length);
        }
    }
}
