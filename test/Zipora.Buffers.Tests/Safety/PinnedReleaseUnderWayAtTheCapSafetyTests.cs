using System;
using System.Buffers;
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

        Exception? refusal = null;
        IMemoryOwner<byte>? rented = null;
        var clock = Stopwatch.StartNew();
        TimeSpan waited = TimeSpan.Zero;
        var renter = new Thread(() =>
        {
            try
            {
                rented = pool.Rent(RentSize);
            }
            catch (InsufficientMemoryException error)
            {
                refusal = error;
            }

            waited = clock.Elapsed;
        });
        renter.Start();
        _ = renter.Join(TimeSpan.FromMilliseconds(300));
        allocator.Proceed.Set();
        Assert.True(renter.Join(TimeSpan.FromSeconds(10)) && ticker.Join(TimeSpan.FromSeconds(10)), "the rent or the tick never ended");

        rented?.Dispose();
        Assert.True(refusal is null, $"a {RentSize}-byte rent was refused after {waited.TotalMilliseconds:F0} ms with {RegionSize} bytes of its room being unmapped by another thread: {refusal}\n{pool.GetStatistics()}");
        Assert.True(waited >= TimeSpan.FromMilliseconds(250), $"the rent was served in {waited.TotalMilliseconds:F0} ms, before the held unmap ended: the cap was not full\n{pool.GetStatistics()}");
    }

    /// <summary>Pinned arrays whose next unmap, once armed, waits until the test lets it go on.</summary>
    private sealed class HeldPinnedArrayAllocator : Native.PinnedArrayPageAllocator
    {
        private int _armed;

        public ManualResetEventSlim Held { get; } = new();

        public ManualResetEventSlim Proceed { get; } = new();

        public void HoldNextUnmap() => Volatile.Write(ref _armed, 1);

        public override bool Unmap(nint address, nuint length)
        {
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                Held.Set();
                Proceed.Wait();
            }

            return base.Unmap(address, length);
        }
    }
}
