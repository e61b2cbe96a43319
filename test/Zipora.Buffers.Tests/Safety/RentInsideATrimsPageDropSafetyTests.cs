using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim drops the pages of a slab's free blocks through the page allocator, under the slab heap's lock; on a slab still
/// being carved, its last page's uncarved rest goes too. The allocator is the user's: a rent on that thread (its
/// callback renting from the pool) comes back into the heap there and may be carved from that very page, which the
/// drop then zeroes under the renter's bytes. Such a rent is refused or keeps its bytes.
/// </summary>
public sealed class RentInsideATrimsPageDropSafetyTests
{
    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void ABlockRentedInsideATrimsPageDropKeepsItsBytes(OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(allocator.PoolOptions(mode, time));

        // 100 blocks of 64 bytes carved from one slab: its second page holds the last 36 and its uncarved rest.
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, 64, 100);
        for (int i = 60; i < 100; i++)
        {
            owners[i].Dispose();
        }

        IMemoryOwner<byte>? rentedInside = null;
        Thread? trimmer = null;
        int once = 0;
        bool refused = false;
        allocator.BeforeAdvise = _ =>
        {
            if (Thread.CurrentThread == trimmer && Interlocked.Exchange(ref once, 1) == 0)
            {
                try
                {
                    rentedInside = pool.Rent(64);
                    rentedInside.Memory.Span.Fill(0x5A);
                }
                catch (InsufficientMemoryException)
                {
                    // Refused: what the pool may answer any rent at a limit, and here keeps every byte.
                    refused = true;
                }
            }
        };
        Exception? thrown = null;
        trimmer = new Thread(() =>
        {
            try
            {
                pool.Trim();
            }
            catch (Exception error)
            {
                thrown = error;
            }
        });
        trimmer.Start();
        Assert.True(trimmer.Join(TimeSpan.FromSeconds(20)), "the trim never ended");
        Assert.True(thrown is null, $"the trim threw: {thrown}");
        Assert.True(once == 1, "no page was dropped on the trimming thread");
        if (!refused)
        {
            Assert.True(rentedInside!.Memory.Span.IndexOfAnyExcept((byte)0x5A) < 0, $"the block rented inside the page drop ({SafetyCases.RangeOf(rentedInside)}) lost its bytes");
        }

        // The pool goes on: a rent after the trim is served, and keeps its bytes.
        rentedInside ??= pool.Rent(64);
        rentedInside.Memory.Span.Fill(0x5A);
        Assert.True(rentedInside.Memory.Span.IndexOfAnyExcept((byte)0x5A) < 0, "a rent after the trim lost its bytes");
        rentedInside.Dispose();
        for (int i = 0; i < 60; i++)
        {
            owners[i].Dispose();
        }

        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive("three delays after the dispose");
    }
}
