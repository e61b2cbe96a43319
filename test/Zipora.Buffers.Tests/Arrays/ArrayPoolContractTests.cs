using System;
using System.Collections.Generic;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>Each promise <see cref="System.Buffers.ArrayPool{T}.Shared"/> makes, held by <see cref="TieredArrayPool"/>.</summary>
public sealed class ArrayPoolContractTests
{
    [Fact]
    public void RentZeroGivesTheSameEmptyArrayEveryTimeAndReturningItDoesNothing()
    {
        var pool = new TieredArrayPool();
        byte[] first = pool.Rent(0);
        byte[] second = pool.Rent(0);

        Assert.Empty(first);
        Assert.Same(first, second);
        pool.Return(first);
        pool.Return(first, clearArray: true);
        Assert.Equal(0, pool.GetStatistics().Arrays.Returns);
    }

    [Fact]
    public void RentNegativeThrowsArgumentOutOfRangeNamingMinimumLength()
    {
        var pool = new TieredArrayPool();
        ArgumentOutOfRangeException error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(-1));
        Assert.Equal("minimumLength", error.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(int.MinValue));
        Assert.Equal(0, pool.GetStatistics().Arrays.Rents);
    }

    [Fact]
    public void ReturnNullThrowsArgumentNullNamingArray()
    {
        var pool = new TieredArrayPool();
        ArgumentNullException error = Assert.Throws<ArgumentNullException>(() => pool.Return(null!));
        Assert.Equal("array", error.ParamName);
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(1000, 1024)]
    [InlineData(4096, 4096)]
    [InlineData(4097, 5120)]
    [InlineData(10_000, 10_240)]
    [InlineData(16_384, 16_384)]
    [InlineData(16_385, 20_480)]
    [InlineData(65_536, 65_536)]
    [InlineData(1_000_000, 1_048_576)]
    [InlineData(5_000_000, 5_242_880)]
    public void RentedArraysHaveTheLengthOfTheSmallestClassThatHoldsTheRequest(int asked, int expected)
    {
        var pool = new TieredArrayPool();
        byte[] array = pool.Rent(asked);

        Assert.Equal(expected, array.Length);
        pool.Return(array);
        Assert.Same(array, pool.Rent(asked));
    }

    [Fact]
    public void EveryLengthUpToTheMaximumIsPooledAndLongerOnesAreExactAndDroppedOnReturn()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 64 * 1024 });
        Assert.Equal(64 * 1024, pool.MaxPooledLength);
        Assert.Equal(1 << 30, new TieredArrayPool().MaxPooledLength);

        byte[] pooled = pool.Rent(64 * 1024);
        pool.Return(pooled);
        Assert.Same(pooled, pool.Rent(64 * 1024));

        byte[] unpooled = pool.Rent((64 * 1024) + 1);
        Assert.Equal((64 * 1024) + 1, unpooled.Length);
        pool.Return(unpooled);
        Assert.NotSame(unpooled, pool.Rent((64 * 1024) + 1));

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(2, statistics.UnpooledRents);
        Assert.Equal(0, statistics.BytesRetained);
    }

    [Fact]
    public void MaxArrayLengthIsRoundedUpToItsClass()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 100_000 });
        Assert.Equal(114_688, pool.MaxPooledLength);
        Assert.Equal(114_688, pool.Rent(100_001).Length);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(100)]
    [InlineData(1000)]
    [InlineData(4100)]
    [InlineData(4608)]
    [InlineData(70_000)]
    public void ReturningAnArrayOfNoClassLengthThrowsArgumentExceptionAfterClearingIt(int length)
    {
        var pool = new TieredArrayPool();
        byte[] foreign = new byte[length];
        foreign.AsSpan().Fill(0xAB);

        ArgumentException error = Assert.Throws<ArgumentException>(() => pool.Return(foreign, clearArray: true));
        Assert.Equal("array", error.ParamName);
        Assert.All(foreign, value => Assert.Equal(0, value));

        foreign.AsSpan().Fill(0xAB);
        Assert.Throws<ArgumentException>(() => pool.Return(foreign));
        Assert.All(foreign, value => Assert.Equal(0xAB, value));
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    [Fact]
    public void ForeignArraysLongerThanTheMaximumAreAcceptedAndDropped()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = 4096 });
        pool.Return(new byte[4097]);
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(4096)]
    [InlineData(100_000)]
    [InlineData(8_000_000)]
    public void ClearArrayZeroesAndOtherwiseTheNextRenterSeesTheOldContents(int length)
    {
        var pool = new TieredArrayPool();
        byte[] array = pool.Rent(length);
        array.AsSpan().Fill(0x5A);
        pool.Return(array);

        byte[] again = pool.Rent(length);
        Assert.Same(array, again);
        Assert.All(again, value => Assert.Equal(0x5A, value));

        pool.Return(again, clearArray: true);
        byte[] cleared = pool.Rent(length);
        Assert.Same(array, cleared);
        Assert.All(cleared, value => Assert.Equal(0, value));
    }

    [Fact]
    public void RentsWithoutReturnsAreAllDistinct()
    {
        var pool = new TieredArrayPool();
        foreach (int length in new[] { 16, 1024, 4096, 20_000, 1_000_000 })
        {
            var seen = new HashSet<byte[]>(ReferenceEqualityComparer.Instance);
            for (int i = 0; i < 300; i++)
            {
                Assert.True(seen.Add(pool.Rent(length)));
            }

            foreach (byte[] array in seen)
            {
                pool.Return(array);
            }

            var again = new HashSet<byte[]>(ReferenceEqualityComparer.Instance);
            for (int i = 0; i < 300; i++)
            {
                Assert.True(again.Add(pool.Rent(length)));
            }
        }
    }

    [Fact]
    public void QuarterMillionParallelRentReturnIterationsOnEveryCoreNeverShareAnArray()
    {
        var pool = new TieredArrayPool();
        int[] lengths = [16, 100, 1024, 4000, 16_384, 50_000];
        Parallel.For(0, Environment.ProcessorCount, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, worker =>
        {
            byte marker = (byte)(worker + 1);
            var held = new Queue<byte[]>();
            for (int i = 0; i < 250_000; i++)
            {
                byte[] array = pool.Rent(lengths[i % lengths.Length]);
                array[0] = marker;
                array[^1] = marker;
                held.Enqueue(array);
                if (held.Count > 8)
                {
                    byte[] back = held.Dequeue();
                    Assert.Equal(marker, back[0]);
                    Assert.Equal(marker, back[^1]);
                    pool.Return(back);
                }
            }

            while (held.Count > 0)
            {
                pool.Return(held.Dequeue());
            }
        });

        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(250_000L * Environment.ProcessorCount, statistics.Arrays.Rents);
        Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.Returns);
        Assert.Equal(0, statistics.BytesInUse);
        Assert.True(statistics.Arrays.HitRatio > 0.99, statistics.ToString());
    }

    [Theory]
    [InlineData(16 * 1024, true)]
    [InlineData(50_000, true)]
    [InlineData(12 * 1024, false)]
    [InlineData(1024, false)]
    public void ArraysAtOrAboveThePinnedThresholdLiveOnThePinnedObjectHeap(int length, bool pinned)
    {
        var pool = new TieredArrayPool();
        byte[] array = pool.Rent(length);

        // Below the large object threshold, only a pinned-heap array starts in the oldest generation.
        Assert.Equal(pinned, GC.GetGeneration(array) == GC.MaxGeneration);
        GC.KeepAlive(array);
    }
}
