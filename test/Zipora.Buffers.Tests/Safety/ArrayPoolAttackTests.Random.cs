using System;
using System.Collections.Generic;
using System.Threading;
using CsCheck;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Random sequences of rents (negative, zero, at class edges, past the maximum), returns of rented arrays (cleared or
/// not), returns of foreign arrays and trims, on pools of random maximum and stack depth: every call answers as the
/// contract says, no live array is handed out twice, none is overwritten while held, and no figure goes negative.
/// </summary>
public sealed partial class ArrayPoolAttackTests
{
    private static readonly Gen<int> s_randomLength = Gen.OneOf(
        Gen.Int[-3, 40],
        Gen.Int[4090, 4100],
        Gen.Int[5115, 5125],
        Gen.Int[16_380, 16_390],
        Gen.Int[(1 << 20) - 3, (1 << 20) + 3],
        Gen.OneOfConst(int.MinValue, 1_310_720, 1_310_721));

    [Fact]
    public void RandomSequencesKeepTheContractNeverHandOutALiveArrayAndNeverShowANegativeFigure()
    {
        Gen<(int Max, int Depth, (int Kind, int Length, bool Clear)[] Operations)> sequences = Gen.Select(
            Gen.OneOfConst(16, 100, 4096, 5000, 1 << 20, 1 << 30),
            Gen.Int[0, 4],
            Gen.Select(Gen.Int[0, 9], s_randomLength, Gen.Bool).Array[1, 80]);
        sequences.Sample(sequence => RunRandomSequence(sequence.Max, sequence.Depth, sequence.Operations), iter: 300);
    }

    private static void RunRandomSequence(int max, int depth, (int Kind, int Length, bool Clear)[] operations)
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { MaxArrayLength = max, ThreadCacheMaxArrays = depth, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var live = new List<(byte[] Array, long Stamp)>();
        byte[] empty = pool.Rent(0);
        bool foreignReturned = false;
        long stamps = 0;
        foreach ((int kind, int length, bool clear) in operations)
        {
            if (kind < 5)
            {
                RentOne(pool, length, empty, live, ref stamps);
            }
            else if (kind < 8 && live.Count > 0)
            {
                (byte[] array, long stamp) = live[(length & int.MaxValue) % live.Count];
                live.Remove((array, stamp));
                Assert.True(HasStamp(array, stamp), "a live array was overwritten");
                pool.Return(array, clear);
                Assert.True(!clear || array.AsSpan().IndexOfAnyExcept((byte)0) < 0, "clearArray left bytes");
            }
            else if (kind == 8 && length >= 0)
            {
                foreignReturned |= ReturnForeign(pool, length);
            }
            else
            {
                pool.Trim();
            }

            TieredArrayPoolStatistics statistics = pool.GetStatistics();
            AssertNoNegativeFigure(statistics);
            if (!foreignReturned)
            {
                long inUse = 0;
                live.ForEach(entry => inUse += entry.Array.Length);
                Assert.Equal(inUse, statistics.BytesInUse);
                Assert.Equal(statistics.Arrays.Rents, statistics.Arrays.Returns + live.Count);
                Assert.Equal(statistics.Arrays.BytesAllocated, statistics.BytesInUse + statistics.BytesRetained + statistics.Arrays.BytesEvicted);
            }
        }
    }

    private static void RentOne(TieredArrayPool pool, int length, byte[] empty, List<(byte[] Array, long Stamp)> live, ref long stamps)
    {
        if (length < 0)
        {
            ArgumentOutOfRangeException error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(length));
            Assert.Equal("minimumLength", error.ParamName);
            return;
        }

        byte[] array = pool.Rent(length);
        if (length == 0)
        {
            Assert.Same(empty, array);
            return;
        }

        Assert.Equal(length <= pool.MaxPooledLength ? ExpectedClassLength(length) : length, array.Length);
        Assert.DoesNotContain(live, entry => ReferenceEquals(entry.Array, array));
        long stamp = ++stamps;
        Stamp(array, stamp);
        live.Add((array, stamp));
    }

    /// <summary>Returns a new array of <paramref name="length"/>: refused exactly when the pool could not have made it; true when accepted.</summary>
    private static bool ReturnForeign(TieredArrayPool pool, int length)
    {
        byte[] foreign = new byte[length];
        bool refused = length > 0 && length <= pool.MaxPooledLength && ExpectedClassLength(length) != length;
        if (refused)
        {
            ArgumentException error = Assert.Throws<ArgumentException>(() => pool.Return(foreign));
            Assert.Equal("array", error.ParamName);
            return false;
        }

        pool.Return(foreign);
        return length > 0;
    }
}
