using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A hostile test of <see cref="TieredArrayPool"/> against the promises of its README section: the contract of
/// <see cref="ArrayPool{T}.Shared"/> at every edge, its options, a caller's double return (compared with
/// <see cref="ArrayPool{T}.Shared"/>), statistics that stay exact and never negative, and storms of trims, idle
/// release and thread churn racing rents and returns, where any array handed to two renters at once is found by
/// each renter stamping the whole array and checking it before giving it back.
/// </summary>
public sealed partial class ArrayPoolAttackTests
{
    public static TheoryData<int> ClassBoundaries
    {
        get
        {
            var lengths = new TheoryData<int>();
            foreach (int length in new[] { 16, 32, 4096, 5120, 6144, 7168, 8192, 10_240, 16_384, 1 << 20, 5 << 18 })
            {
                lengths.Add(length - 1);
                lengths.Add(length);
                lengths.Add(length + 1);
            }

            return lengths;
        }
    }

    [Theory]
    [MemberData(nameof(ClassBoundaries))]
    public void EveryLengthAroundAClassBoundaryGetsTheSmallestClassThatHoldsItAndOnlyClassLengthsGoBack(int length)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] array = pool.Rent(length);
        int expected = ExpectedClassLength(length);
        Assert.Equal(expected, array.Length);

        pool.Return(array);
        Assert.Same(array, pool.Rent(length));
        pool.Return(array);

        // An array of the asked length is accepted only where that length is a class length.
        byte[] foreign = new byte[length];
        if (expected == length)
        {
            pool.Return(foreign);
            Assert.Same(foreign, pool.Rent(length));
        }
        else
        {
            ArgumentException error = Assert.Throws<ArgumentException>(() => pool.Return(foreign));
            Assert.Equal("array", error.ParamName);
        }
    }

    [Theory]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(4097, 5120)]
    [InlineData(1 << 30, 1 << 30)]
    [InlineData((1 << 30) - 1, 1 << 30)]
    public void AtTheExtremesOfMaxArrayLengthTheLongestPooledArrayIsItsClassAndOneMoreIsExactAndDropped(int maxArrayLength, int maxPooled)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = maxArrayLength, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        Assert.Equal(maxPooled, pool.MaxPooledLength);

        if (maxPooled <= 1 << 20)
        {
            byte[] longest = pool.Rent(maxPooled);
            Assert.Equal(maxPooled, longest.Length);
            pool.Return(longest);
            Assert.Same(longest, pool.Rent(maxPooled));

            byte[] beyond = pool.Rent(maxPooled + 1);
            Assert.Equal(maxPooled + 1, beyond.Length);
            pool.Return(beyond);
            Assert.NotSame(beyond, pool.Rent(maxPooled + 1));
        }

        byte[] smallest = pool.Rent(1);
        Assert.Equal(16, smallest.Length);
        pool.Return(smallest);
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(int.MaxValue - 1)]
    public void RentBeyondTheLargestArrayThrowsOutOfMemoryAsSharedDoesAndCountsNothing(int length)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        Assert.Throws<OutOfMemoryException>(() => ArrayPool<byte>.Shared.Rent(length));
        Assert.Throws<OutOfMemoryException>(() => pool.Rent(length));

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Arrays.Rents);
        Assert.Equal(0, statistics.UnpooledRents);
        Assert.Equal(0, statistics.BytesInUse);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    [InlineData(int.MinValue + 1)]
    public void EveryNegativeLengthThrowsArgumentOutOfRangeAsSharedDoes(int length)
    {
        var pool = new TieredArrayPool();
        ArgumentOutOfRangeException shared = Assert.Throws<ArgumentOutOfRangeException>(() => ArrayPool<byte>.Shared.Rent(length));
        ArgumentOutOfRangeException ours = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(length));
        Assert.Equal(shared.ParamName, ours.ParamName);
        Assert.Equal(0, pool.GetStatistics().Arrays.Rents);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(17)]
    [InlineData(4095)]
    [InlineData(5000)]
    public void ALengthSharedRefusesOnReturnIsRefusedHereTooWithTheSameParameterName(int length)
    {
        // Only lengths both pools consider foreign: above 4 KB the classes differ (5 KB is ours, not Shared's).
        var pool = new TieredArrayPool();
        ArgumentException shared = Assert.Throws<ArgumentException>(() => ArrayPool<byte>.Shared.Return(new byte[length]));
        ArgumentException ours = Assert.Throws<ArgumentException>(() => pool.Return(new byte[length]));
        Assert.Equal(shared.ParamName, ours.ParamName);
        Assert.Equal(0, pool.GetStatistics().Arrays.Returns);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(4096)]
    [InlineData(20_480)]
    [InlineData(1 << 20)]
    public void ClearArrayZeroesEveryByteAndTheNextRenterGetsThatArray(int length)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] array = pool.Rent(length);
        array.AsSpan().Fill(0xC3);
        pool.Return(array, clearArray: true);
        Assert.Equal(-1, array.AsSpan().IndexOfAnyExcept((byte)0));

        // Across threads too: cleared before it goes anywhere another thread can take it from.
        byte[] second = pool.Rent(length);
        second.AsSpan().Fill(0x3C);
        var other = new Thread(() => pool.Return(second, clearArray: true));
        other.Start();
        other.Join();
        Assert.Equal(-1, second.AsSpan().IndexOfAnyExcept((byte)0));
    }

    [Fact]
    public void AnArrayNeverRentedButOfAClassLengthIsPooledAndTheCountsStayBalanced()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] foreign = new byte[8192];
        pool.Return(foreign);
        Assert.Same(foreign, pool.Rent(8000));
        pool.Return(foreign);

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.Returns);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(8192, statistics.BytesRetained);
        Assert.True(statistics.Arrays.CacheHits >= 0 && statistics.Arrays.CacheMisses >= 0, statistics.ToString());
    }

    public static TheoryData<string, Action<TieredArrayPoolOptions>> BadOptions => new()
    {
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = 15 },
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = 0 },
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = -1 },
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = (1 << 30) + 1 },
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = Array.MaxLength },
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = int.MaxValue },
        { nameof(TieredArrayPoolOptions.ThreadCacheMaxArrays), options => options.ThreadCacheMaxArrays = -1 },
        { nameof(TieredArrayPoolOptions.ThreadCacheMaxArrays), options => options.ThreadCacheMaxArrays = 65_537 },
        { nameof(TieredArrayPoolOptions.ThreadCacheMaxArrays), options => options.ThreadCacheMaxArrays = int.MaxValue },
        { nameof(TieredArrayPoolOptions.ThreadCacheMaxBytesPerClass), options => options.ThreadCacheMaxBytesPerClass = int.MinValue },
        { nameof(TieredArrayPoolOptions.SharedCacheMaxBytes), options => options.SharedCacheMaxBytes = -1 },
        { nameof(TieredArrayPoolOptions.PinnedThreshold), options => options.PinnedThreshold = -16 },
        { nameof(TieredArrayPoolOptions.IdleReleaseDelay), options => options.IdleReleaseDelay = TimeSpan.Zero },
        { nameof(TieredArrayPoolOptions.IdleReleaseDelay), options => options.IdleReleaseDelay = TimeSpan.FromTicks(-1) },
        { nameof(TieredArrayPoolOptions.IdleReleaseDelay), options => options.IdleReleaseDelay = TimeSpan.MinValue },
        { nameof(TieredArrayPoolOptions.Name), options => options.Name = " " },
        { nameof(TieredArrayPoolOptions.Name), options => options.Name = null! },
        { nameof(TieredArrayPoolOptions.TimeProvider), options => options.TimeProvider = null! },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void EachBadOptionThrowsAnArgumentExceptionNamingItAndNothingIsLeftBehind(string option, Action<TieredArrayPoolOptions> spoil)
    {
        var options = new TieredArrayPoolOptions();
        spoil(options);
        ArgumentException error = Assert.ThrowsAny<ArgumentException>(() => new TieredArrayPool(options));
        Assert.Equal(option, error.ParamName);
        Assert.Contains(option, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheEdgesOfEveryOptionAreAcceptedAndWork()
    {
        foreach (TieredArrayPoolOptions options in new[]
        {
            new TieredArrayPoolOptions { ThreadCacheMaxArrays = 0, ThreadCacheMaxBytesPerClass = 0, SharedCacheMaxBytes = 0, PinnedThreshold = 0 },
            new TieredArrayPoolOptions { ThreadCacheMaxArrays = 1, ThreadCacheMaxBytesPerClass = 1, SharedCacheMaxBytes = long.MaxValue, PinnedThreshold = int.MaxValue },
            new TieredArrayPoolOptions { ThreadCacheMaxArrays = 65_536, ThreadCacheMaxBytesPerClass = int.MaxValue },
            new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.FromTicks(1) },
            new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.MaxValue },
        })
        {
            var pool = new TieredArrayPool(options);
            var held = new List<byte[]>();
            for (int i = 0; i < 10; i++)
            {
                held.Add(pool.Rent(100_000));
                held.Add(pool.Rent(16));
            }

            Assert.Equal(held.Count, new HashSet<byte[]>(held, ReferenceEqualityComparer.Instance).Count);
            foreach (byte[] array in held)
            {
                pool.Return(array);
            }

            TieredArrayPoolStatistics statistics = pool.GetStatistics();
            Assert.Equal(20, statistics.Arrays.Rents);
            Assert.Equal(20, statistics.Arrays.Returns);
            Assert.Equal(0, statistics.BytesInUse);
            Assert.Equal(statistics.Arrays.BytesAllocated, statistics.BytesRetained + statistics.Arrays.BytesEvicted);
        }
    }

    private static int ExpectedClassLength(int length)
    {
        int power = 16;
        while (power < length && power < 4096)
        {
            power *= 2;
        }

        if (length <= 4096)
        {
            return power;
        }

        // Four classes per doubling above 4 KB: 5, 6, 7 and 8 quarters of the power of two below.
        int below = 4096;
        while (below * 2 < length)
        {
            below *= 2;
        }

        int quarter = below / 4;
        return (length + quarter - 1) / quarter * quarter;
    }
}
