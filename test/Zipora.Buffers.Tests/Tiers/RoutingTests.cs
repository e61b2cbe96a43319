using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

public sealed class RoutingTests
{
    public static TheoryData<int, string, int> Boundaries => new()
    {
        { 1, "small", 16 },
        { 16, "small", 16 },
        { 17, "small", 32 },
        { 129, "small", 160 },
        { 1023, "small", 1024 },
        { 1024, "medium", 1024 },
        { 1025, "medium", 2048 },
        { 4096, "medium", 4096 },
        { 16384, "medium", 16384 },
        { 16385, "large", 20480 },
        { 100_000, "large", 114_688 },
        { 2 * 1024 * 1024, "large", 2 * 1024 * 1024 },
        { (2 * 1024 * 1024) + 1, "huge", 2_621_440 },
        { 5_000_000, "huge", 5 * 1024 * 1024 },
        { 1024 * 1024 * 1024, "huge", 1024 * 1024 * 1024 },
    };

    [Theory]
    [MemberData(nameof(Boundaries))]
    public void EachSizeGoesToItsTierAndClass(int size, string tier, int classSize)
    {
        using var pool = new TieredMemoryPool();
        using IMemoryOwner<byte> owner = pool.Rent(size);
        Assert.Equal(classSize, owner.Memory.Length);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        foreach (TierStatistics each in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
        {
            Assert.Equal(each.Name == tier ? 1 : 0, each.Rents);
        }
    }

    /// <summary>Pools whose limits cut the tiers at other places: MaxBufferSize inside each tier, at int.MaxValue, and thresholds moved.</summary>
    public static TheoryData<int, int, int, bool> Limits
    {
        get
        {
            var limits = new TheoryData<int, int, int, bool>();
            foreach (bool reuseOwners in new[] { false, true })
            {
                limits.Add(1024 * 1024 * 1024, 16 * 1024, 2 * 1024 * 1024, reuseOwners);
                limits.Add(int.MaxValue, 16 * 1024, 2 * 1024 * 1024, reuseOwners);
                limits.Add(10_000, 16 * 1024, 2 * 1024 * 1024, reuseOwners);
                limits.Add(100_000, 16 * 1024, 2 * 1024 * 1024, reuseOwners);
                limits.Add(5_000_000, 16 * 1024, 2 * 1024 * 1024, reuseOwners);
                limits.Add(20_000, 4096, 8192, reuseOwners);
                limits.Add(3_000_000, 1024 * 1024, 2 * 1024 * 1024, reuseOwners);
            }

            return limits;
        }
    }

    [Theory]
    [MemberData(nameof(Limits))]
    public void EverySizeUpToMaxBufferSizeReachesItsTierAndEveryOtherSizeIsRefused(int maxBufferSize, int mmapThreshold, int hugepageThreshold, bool reuseOwners)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            MaxBufferSize = maxBufferSize,
            MmapThreshold = mmapThreshold,
            HugepageThreshold = hugepageThreshold,
            ReuseOwners = reuseOwners,
        });

        // The edges of every tier, and of the limit: a range check off by one on any fast path shows at one of them.
        int[] edges = [1, 1023, 1024, mmapThreshold, mmapThreshold + 1, hugepageThreshold, hugepageThreshold + 1, 3_000_000, maxBufferSize];
        var expectedRents = new long[4];
        foreach (int size in edges)
        {
            if (size > maxBufferSize || (size > 3_000_000 && size != maxBufferSize) || size > 64 * 1024 * 1024)
            {
                continue;
            }

            int tier = size < 1024 ? 0 : size <= mmapThreshold ? 1 : size <= hugepageThreshold ? 2 : 3;
            using IMemoryOwner<byte> owner = pool.Rent(size);
            Assert.True(owner.Memory.Length >= size, $"Rent({size}) gave {owner.Memory.Length} bytes");
            owner.Memory.Span[size - 1] = 1;
            expectedRents[tier]++;
        }

        foreach (int size in new[] { maxBufferSize == int.MaxValue ? -2 : maxBufferSize + 1, -2, int.MinValue, int.MinValue + 1, int.MinValue + 2048 })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(size));
            Assert.Equal("minBufferSize", error.ParamName);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(expectedRents, new[] { statistics.Small.Rents, statistics.Medium.Rents, statistics.Large.Rents, statistics.Huge.Rents });
        Assert.Equal(0, statistics.Small.BytesInUse + statistics.Medium.BytesInUse + statistics.Large.BytesInUse + statistics.Huge.BytesInUse);
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(33, 16)]
    [InlineData(1000, 16)]
    [InlineData(1024, 64)]
    [InlineData(3000, 64)]
    [InlineData(16384, 64)]
    [InlineData(16385, 4096)]
    [InlineData(1_000_000, 4096)]
    [InlineData(3_000_000, 2 * 1024 * 1024)]
    public void BuffersAreAlignedAsTheirTierPromises(int size, int alignment)
    {
        using var pool = new TieredMemoryPool();
        var owners = new IMemoryOwner<byte>[8];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(size);
            Assert.Equal(0, OwnerAddress.Of(owners[i]) % alignment);
        }

        Array.ForEach(owners, owner => owner.Dispose());
    }

    [Fact]
    public void LargeAndHugeClassesStayWithinAQuarterOfTheRequest()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        for (int size = 16385; size <= 64 * 1024 * 1024; size += size / 7)
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            Assert.InRange(owner.Memory.Length, size, size * 1.25);
        }
    }
}
