using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab heap finds a block's slab by a binary search of its slabs sorted by address (the search that places new
/// slabs): a trim letting a slab go, and a disposed pool taking back its cached and late blocks, each search once. Here
/// the slabs are placed: 1,600 of them side by side (a block's last byte is its slab's last, the next slab's first
/// block the byte after), near the top or the bottom of user space, mapped in descending, interleaved or shuffled
/// order (each new slab goes first, in the middle, anywhere in the list), with a trim letting whole slabs go between
/// mappings, and the pool disposed with a third of the blocks rented: every block keeps its bytes, every slab is
/// unmapped once, none twice, and nothing is in use.
/// </summary>
public sealed class SlabSearchAtPlacedAddressesSafetyTests
{
    private const int BlockSize = 4096;
    private const int BlocksPerSlab = 16;
    private const int SlabBytes = BlockSize * BlocksPerSlab;
    private const int FirstSlabs = 1_200;
    private const int LaterSlabs = 400;

    public static TheoryData<string, long, OwnerMode> Placements => new()
    {
        { "descending", 0x7F00_0000_0000, OwnerMode.Default },
        { "interleaved", 0x7F00_0000_0000, OwnerMode.ReuseOwners },
        { "shuffled", 0x7F00_0000_0000, OwnerMode.Default },
        { "descending", 0x1000_0000, OwnerMode.ReuseOwners },
        { "interleaved", 0x1000_0000, OwnerMode.Default },
        { "shuffled", 0x1000_0000, OwnerMode.ReuseOwners },
    };

    [Theory]
    [MemberData(nameof(Placements))]
    public void EveryBlockOfAdjacentSlabsInAnyOrderIsFoundByItsTrimAndItsDispose(string order, long near, OwnerMode mode)
    {
        Skip.Unless(OperatingSystem.IsLinux(), "places its mappings with Linux's mmap");
        var time = new FakeTimeProvider();
        using var allocator = new PlacedSlabsAllocator(SlabBytes, Order(order, FirstSlabs + LaterSlabs), (nint)near);
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.PageAllocator = allocator;
        options.EnableHugepages = false;
        Assert.True(Math.Abs((long)allocator.Start - near) < 1L << 32, $"the reservation landed at 0x{allocator.Start:x}, far from 0x{near:x}");
        var pool = new TieredMemoryPool(options);
        var random = new Random(7);

        List<IMemoryOwner<byte>> rented = RentMarked(pool, FirstSlabs * BlocksPerSlab, 0);
        Assert.True(allocator.HandedOut == FirstSlabs, $"the medium slabs were not the placed pieces: {allocator.HandedOut} handed out for {FirstSlabs}");

        // Whole slabs back, a third of them, and trimmed: each let go of is found by its address.
        IGrouping<nint, IMemoryOwner<byte>>[] bySlab = [.. rented.GroupBy(static owner => SafetyCases.RangeOf(owner).Start & ~(nint)(SlabBytes - 1))];
        Assert.Equal(FirstSlabs, bySlab.Length);
        var freed = bySlab.OrderBy(_ => random.Next()).Take(FirstSlabs / 3).SelectMany(static slab => slab).ToHashSet();
        foreach (IMemoryOwner<byte> owner in freed)
        {
            owner.Dispose();
        }

        rented.RemoveAll(freed.Contains);
        pool.Trim();
        AssertMarks(rented, "after a trim let whole slabs go");

        // New slabs among the old ones, then half the blocks back at random, and the pool disposed.
        rented.AddRange(RentMarked(pool, LaterSlabs * BlocksPerSlab, FirstSlabs * BlocksPerSlab));
        rented = [.. rented.OrderBy(_ => random.Next())];
        int half = rented.Count / 2;
        foreach (IMemoryOwner<byte> owner in rented.Take(half))
        {
            owner.Dispose();
        }

        rented.RemoveRange(0, half);
        pool.Dispose();
        AssertMarks(rented, "after the pool's dispose");

        foreach (IMemoryOwner<byte> owner in rented)
        {
            owner.Dispose();
        }

        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoMisuse();
        Assert.True(allocator.LiveCount == 0, $"{allocator.LiveCount} placed slabs still mapped three delays after the last return\n{pool.GetStatistics()}");
    }

    private static List<IMemoryOwner<byte>> RentMarked(TieredMemoryPool pool, int count, int firstMark)
    {
        var owners = new List<IMemoryOwner<byte>>(count);
        for (int i = 0; i < count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(BlockSize);
            Span<byte> span = owner.Memory.Span;
            BinaryPrimitives.WriteInt32LittleEndian(span, firstMark + i);
            BinaryPrimitives.WriteInt32LittleEndian(span[^4..], ~(firstMark + i));
            owners.Add(owner);
        }

        return owners;
    }

    private static void AssertMarks(List<IMemoryOwner<byte>> owners, string when)
    {
        foreach (IMemoryOwner<byte> owner in owners)
        {
            Span<byte> span = owner.Memory.Span;
            int mark = BinaryPrimitives.ReadInt32LittleEndian(span);
            Assert.True(BinaryPrimitives.ReadInt32LittleEndian(span[^4..]) == ~mark, $"{when}: the block {SafetyCases.RangeOf(owner)} lost its bytes");
        }
    }

    private static int[] Order(string order, int count)
    {
        int[] indexes = [.. Enumerable.Range(0, count)];
        switch (order)
        {
            case "descending":
                Array.Reverse(indexes);
                break;
            case "interleaved":
                indexes = [.. indexes.Select(i => i % 2 == 0 ? i / 2 : count - 1 - (i / 2))];
                break;
            default:
                new Random(11).Shuffle(indexes);
                break;
        }

        return indexes;
    }
}
