using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab trim gives the slabs it let go of back after it let go of the heap's lock, with the caches open: a slab whose
/// delay is over is unmapped there, and a rent meanwhile may map its new slab at that very address, while the trim has
/// yet to take the old one out of the heap's counts. The heap must then hold the new slab alone at that address (a
/// second slab listed there would be found for the other's blocks), and no buffer may share a byte with another.
/// </summary>
public sealed class GiveBackAddressReuseTests
{
    private const int TrimmedSize = 4096;
    private const int OtherSize = 8192;
    private const int Cached = 300;
    private const int Live = 10;

    // Rents of the trimmed class during the give-back, at most: enough slabs that one lands where the slab was.
    private const int MostRentsMeanwhile = 2_000;

    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void ARentMapsItsSlabWhereATrimJustUnmappedOneAndEveryBufferKeepsItsBytes(OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(mode, time);

        // No idle trim: the class's blocks wait out their delay cached, so the next trim unmaps their slabs at once.
        options.AdaptiveCaches = false;
        var pool = new TieredMemoryPool(options);
        var live = new List<(IMemoryOwner<byte> Owner, byte Stamp)>();
        RentStamped(pool, live, Live);
        IMemoryOwner<byte>[] cached = [.. Enumerable.Range(0, Cached).Select(_ => pool.Rent(TrimmedSize))];
        Array.ForEach(cached, owner => owner.Dispose());

        // Three delays of ticks with another class in use at each: the tier is never quiet (no tier-wide idle trim), and
        // the trimmed class's blocks were returned three delays ago.
        for (int tick = 0; tick < 3 * 4; tick++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            pool.Rent(OtherSize).Dispose();
        }

        using var unmapped = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        nint heldAddress = 0;
        allocator.AfterUnmap = address =>
        {
            if (Interlocked.CompareExchange(ref heldAddress, address, 0) == 0)
            {
                unmapped.Set();
                _ = letGo.Wait(TimeSpan.FromSeconds(30));
            }
        };

        Exception? trimFailure = null;
        var trimmer = new Thread(() =>
        {
            try
            {
                pool.Trim();
            }
            catch (Exception error)
            {
                trimFailure = error;
            }
        });
        trimmer.Start();
        bool wasUnmapped = unmapped.Wait(TimeSpan.FromSeconds(10));
        int rentsMeanwhile = 0;
        Exception? rentFailure = null;
        bool mappedAgain = false;
        try
        {
            Assert.True(wasUnmapped, "the trim unmapped no slab: its blocks' delay was not over");
            while (!mappedAgain && rentsMeanwhile < MostRentsMeanwhile)
            {
                RentStamped(pool, live, 1);
                rentsMeanwhile++;
                mappedAgain = allocator.Live().Any(mapping => mapping.Address == heldAddress);
            }
        }
        catch (Exception error)
        {
            rentFailure = error;
        }
        finally
        {
            letGo.Set();
            trimmer.Join();
        }

        Assert.True(rentFailure is null, $"a rent while the trim gave back a slab it unmapped failed: {rentFailure}");
        Assert.True(trimFailure is null, $"the trim failed: {trimFailure}");
        Assert.True(mappedAgain, $"no slab was mapped at 0x{heldAddress:x} in {rentsMeanwhile} rents, so the test proves nothing");
        AssertStampsAndDisjoint(live, "after the give-back");

        // The heap lists the new slab alone: every block of it goes back and is trimmed with it.
        live.ForEach(entry => entry.Owner.Dispose());
        pool.Trim();
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(SafetyCases.NegativeFigures(trimmed) is null, $"{SafetyCases.NegativeFigures(trimmed)}\n{trimmed}");
        Assert.True(trimmed.BytesRetained == 0 && trimmed.BytesInUse == 0, $"the trim after left memory retained\n{trimmed}");
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive("three delays after the pool's dispose");
    }

    private static void RentStamped(TieredMemoryPool pool, List<(IMemoryOwner<byte> Owner, byte Stamp)> live, int count)
    {
        for (int i = 0; i < count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(TrimmedSize);
            byte stamp = (byte)(1 + (live.Count % 251));
            owner.Memory.Span.Fill(stamp);
            live.Add((owner, stamp));
        }
    }

    private static void AssertStampsAndDisjoint(List<(IMemoryOwner<byte> Owner, byte Stamp)> live, string what)
    {
        foreach ((IMemoryOwner<byte> owner, byte stamp) in live)
        {
            int wrong = owner.Memory.Span.IndexOfAnyExcept(stamp);
            Assert.True(wrong < 0, $"{what}: the buffer at 0x{OwnerAddress.Of(owner):x} holds {(wrong < 0 ? 0 : owner.Memory.Span[wrong])} at {wrong}, not its stamp {stamp}: another owner wrote it");
        }

        SafetyCases.AssertDisjoint(live.Select(entry => entry.Owner), what);
    }
}
