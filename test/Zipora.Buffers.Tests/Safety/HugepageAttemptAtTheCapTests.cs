using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A huge rent near <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> tries reserved hugepages first, a length rounded
/// up to 2 MB, and base pages of the class's own length after. The hugepage attempt, which fails anyway in the usual
/// case (<c>vm.nr_hugepages</c> 0), reserved its rounded length under the cap first: where that did not fit, it trimmed
/// the whole pool (every thread's cached memory given back), waited for releases under way and counted a refusal of
/// the cap, and then the base pages fitted without any of it.
/// </summary>
public sealed class HugepageAttemptAtTheCapTests
{
    private const int HugeRent = 3 * 1024 * 1024;
    private const int LargeRent = 100_000;

    [Fact]
    public void AHugeRentThatFitsOnBasePagesTrimsNothingForItsHugepageAttempt()
    {
        long largeMapped = MappedFor(LargeRent);
        long hugeMapped = MappedFor(HugeRent);
        Assert.True(hugeMapped == HugeRent, $"a {HugeRent}-byte rent mapped {hugeMapped} bytes, not its own length on base pages (hugepages reserved here?)");

        // Room for the huge rent on base pages beside the cached large region, not for its hugepage length (4 MB).
        var options = new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider(), MaxBytesInUse = hugeMapped + largeMapped + (256 * 1024) };
        using var pool = new TieredMemoryPool(options);
        pool.Rent(LargeRent).Dispose();
        long cachedBefore = pool.GetStatistics().Large.BytesRetained;
        Assert.True(cachedBefore > 0, $"the large region was not cached\n{pool.GetStatistics()}");

        using (IMemoryOwner<byte> huge = pool.Rent(HugeRent))
        {
            huge.Memory.Span[^1] = 1;
        }

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(after.Large.BytesRetained == cachedBefore, $"the huge rent, served on base pages within the cap, trimmed the pool for its hugepage attempt: {cachedBefore} bytes of large regions cached before, {after.Large.BytesRetained} after\n{after}");
    }

    /// <summary>Bytes a pool without a cap maps for one rent of <paramref name="size"/>.</summary>
    private static long MappedFor(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = new FakeTimeProvider() });
        using IMemoryOwner<byte> owner = pool.Rent(size);
        TieredMemoryPoolStatistics s = pool.GetStatistics();
        return s.Large.BytesAllocated + s.Huge.BytesAllocated;
    }
}
