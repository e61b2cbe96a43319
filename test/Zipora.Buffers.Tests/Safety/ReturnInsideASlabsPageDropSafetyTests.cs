using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A disposed slab heap gives a slab back (its pages dropped now, unmapped a delay later) through the page allocator,
/// under the heap's lock. The allocator is the user's: a return on that thread (its callback disposing a buffer of the
/// pool) comes back into the heap there, and may free a slab of its own, which leaves the heap's sorted list of slabs
/// shorter by one below the slab being given back. Here three slabs of one class lie low, middle and high: the middle
/// one is all free and given back first, the low one's last block comes back in its page drop, and the high one holds a
/// block still rented (or the top one is all free, given back first, and the middle one holds the rented block). Each
/// slab must be unmapped once, the rented block keep its slab, and its return find it.
/// </summary>
public sealed class ReturnInsideASlabsPageDropSafetyTests
{
    private const int BlockSize = 4096;

    [Theory]
    [InlineData(OwnerMode.Default, "dispose")]
    [InlineData(OwnerMode.ReuseOwners, "dispose")]
    [InlineData(OwnerMode.Default, "dispose, the top slab free")]
    [InlineData(OwnerMode.Default, "late return")]
    [InlineData(OwnerMode.ReuseOwners, "late return")]
    public void ABlockReturnedInsideASlabsPageDropLeavesEverySlabListedUntilItsOwnUnmap(OwnerMode mode, string givenBackBy)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(mode, time);
        options.EnableHugepages = false;
        var pool = new TieredMemoryPool(options);

        // Three slabs of the class, each block placed in its slab's mapping.
        List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, BlockSize, 48);
        (nint Address, nuint Length, long MappedAt, int Tag)[] slabs = [.. allocator.Live().OrderBy(static mapping => mapping.Address)];
        Assert.True(slabs.Length == 3, $"three slabs of 64 KB expected: {slabs.Length} mappings");
        IMemoryOwner<byte>[][] bySlab = [.. slabs.Select(slab => owners.Where(owner => In(slab, owner)).ToArray())];
        IMemoryOwner<byte> returnedInside = bySlab[0][0];
        IMemoryOwner<byte> held = givenBackBy == "dispose, the top slab free" ? bySlab[1][0] : bySlab[2][0];
        IMemoryOwner<byte> lastOfTheMiddle = bySlab[1][0];
        held.Memory.Span.Fill(0x5A);
        foreach (IMemoryOwner<byte> owner in owners.Where(owner => owner != returnedInside && owner != held && (givenBackBy != "late return" || owner != lastOfTheMiddle)))
        {
            owner.Dispose();
        }

        // The return inside the page drop, on the thread dropping the pages.
        var unmaps = new Dictionary<nint, int>();
        allocator.AfterUnmap = address =>
        {
            lock (unmaps)
            {
                unmaps[address] = unmaps.GetValueOrDefault(address) + 1;
            }
        };
        Thread? dropper = null;
        int once = 0;
        allocator.BeforeAdvise = _ =>
        {
            if (Thread.CurrentThread == dropper && Interlocked.Exchange(ref once, 1) == 0)
            {
                returnedInside.Dispose();
            }
        };

        // The middle slab given back first: by the dispose (all free, higher than the low one), or by its last late
        // return; or the top one, all free, by the dispose, with the rented block in the middle one.
        if (givenBackBy == "late return")
        {
            pool.Dispose();
        }

        Exception? thrown = null;
        dropper = new Thread(() =>
        {
            try
            {
                (givenBackBy == "late return" ? lastOfTheMiddle.Dispose : (Action)pool.Dispose)();
            }
            catch (Exception error)
            {
                thrown = error;
            }
        });
        dropper.Start();
        Assert.True(dropper.Join(TimeSpan.FromSeconds(20)), "the give-back never ended");
        Assert.True(once == 1, "no page was dropped on the giving-back thread");
        Assert.True(thrown is null, $"giving the middle slab back threw: {thrown}");

        // The clock has not moved: nothing is unmapped yet, and the high slab holds the rented block, which finds it
        // when it comes back. (Checked before the clock moves: a slab listed twice would be unmapped twice at its tick.)
        Assert.True(unmaps.Count == 0, $"{unmaps.Count} slabs unmapped within their delay");
        OwnerRange range = SafetyCases.RangeOf(held);
        Assert.True(ProcessMappings.IsWritable(range.Start, range.Length), $"the rented block lost its slab: {ProcessMappings.Describe(range.Start, range.Length)}");
        Assert.True(held.Memory.Span.IndexOfAnyExcept((byte)0x5A) < 0, "the rented block lost its bytes");
        Exception? returnFailure = FreshThread.Run(held.Dispose);
        Assert.True(returnFailure is null, $"the rented block's return threw: {returnFailure}");

        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        lock (unmaps)
        {
            Assert.True(unmaps.All(static unmap => unmap.Value == 1), $"unmapped more than once: {string.Join(", ", unmaps.Where(static unmap => unmap.Value > 1).Select(static unmap => $"0x{unmap.Key:x} x{unmap.Value}"))}");
        }

        allocator.AssertNoneLive($"three delays after the last return\n{pool.GetStatistics()}");
    }

    private static bool In((nint Address, nuint Length, long MappedAt, int Tag) slab, IMemoryOwner<byte> owner)
    {
        OwnerRange range = SafetyCases.RangeOf(owner);
        return range.Start >= slab.Address && range.End <= slab.Address + (nint)slab.Length;
    }
}
