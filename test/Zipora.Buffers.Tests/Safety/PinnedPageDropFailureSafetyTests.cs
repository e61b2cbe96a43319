using System;
using System.Buffers;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An unmap that throws must have unmapped nothing (<see cref="PageAllocator.Unmap"/>): the pool takes an
/// <see cref="OutOfMemoryException"/> (which a first call can meet at the GC heap limit) for a refusal, keeps the mapping
/// listed and counted, tries it again, and may hand it out again to a new mapping of its length. A pinned array's page
/// drop ran after the array had been taken off the allocator's list, so a drop that threw left a mapping the pool still
/// listed but no array behind it: the GC freed the array and gave its memory to others, while the pool handed the
/// same range out again as buffers with no array (two owners of the memory, and Kestrel's socket transport throws for
/// a buffer that is not array-backed).
/// </summary>
public sealed class PinnedPageDropFailureSafetyTests
{
    public static TheoryData<int> Sizes => [100_000, 3_000_000];

    [Theory]
    [MemberData(nameof(Sizes))]
    public void APinnedArrayWhosePageDropThrowsStaysMappedAndIsHandedOutAgainArrayBacked(int size)
    {
        var allocator = new ThrowingDropAllocator();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, UsePinnedArrays = true, TimeProvider = new FakeTimeProvider() });
        IMemoryOwner<byte> first = pool.Rent(size);
        nint address = SafetyCases.RangeOf(first).Start;
        first.Dispose();

        // Let go of at once under pressure; the drop throws on the way.
        allocator.ThrowAtNextDrop();
        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.True(allocator.Threw, "the page drop was never reached: the test tested nothing");
        Assert.True(pool.GetStatistics().UnmapFailures >= 1, "the unmap that threw should count as refused");

        // Whatever the pool still lists must still be the allocator's: an array on its list, kept alive by it.
        Assert.True(
            pool.GetStatistics().BytesAwaitingRelease == 0 || allocator.TryGetBackingArray(address, out _, out _),
            "an unmap the pool took as refused (it threw) had taken the array off the allocator's list: nothing held it for the GC");

        // A rent of its length (which takes a listed mapping again) gets an array-backed buffer whose array the
        // allocator holds, after a collection that would have freed an array nothing held.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        IMemoryOwner<byte> again = pool.Rent(size);
        nint againAt = SafetyCases.RangeOf(again).Start;
        Assert.True(MemoryMarshal.TryGetArray<byte>(again.Memory, out ArraySegment<byte> segment), "a pinned pool handed out a buffer with no array behind it");
        Assert.True(allocator.TryGetBackingArray(againAt, out byte[]? array, out _), "a buffer handed out lies in no array of the allocator");
        Assert.Same(array, segment.Array);
        again.Dispose();

        // Let go of again, the drops working: everything unmapped for good, with no refusal past the one that threw.
        ((IReclaimablePool)pool).TrimUnderPressure();
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.Equal(0, after.BytesAwaitingRelease);
        Assert.Equal(1, after.UnmapFailures);
        Assert.False(allocator.TryGetBackingArray(againAt, out _, out _));
    }

    private sealed class ThrowingDropAllocator : PinnedArrayPageAllocator
    {
        private int _armed;

        public bool Threw { get; private set; }

        public void ThrowAtNextDrop() => Volatile.Write(ref _armed, 1);

        [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown at the heap limit.")]
        protected override bool DropWholePages(nint address, nuint length)
        {
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                Threw = true;
                throw new OutOfMemoryException("as a first call can at the GC heap limit");
            }

            return base.DropWholePages(address, length);
        }
    }
}
