using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using CsCheck;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Random sequences of rent, write, return, trim and use of another pool on one thread, against a model that only
/// remembers which arrays are live and what was written into them, for thread stacks of one to five arrays and shared
/// depots from none to plenty: every slot of a stack (the newest array's, the older ones', the spill to the depot,
/// the drop past its cap) and every way into the slow path is reached.
/// </summary>
public sealed class ArrayPoolModelTests
{
    private static readonly int[] s_lengths = [16, 1000, 4096, 5000, 100_000];

    [Fact]
    public void ThePoolBehavesLikeItsModelAndHandsTheNewestArrayBackFirst()
    {
        GenOperation<PoolUnderTest, Model> rent = Gen.Select(Gen.Int[0, s_lengths.Length - 1], Gen.Byte[1, 255]).Operation<PoolUnderTest, Model>(
            operation => $"Rent({s_lengths[operation.Item1]}) <- {operation.Item2}",
            (actual, operation) => actual.Rent(s_lengths[operation.Item1], operation.Item2),
            (model, operation) => model.Rent(s_lengths[operation.Item1], operation.Item2));
        GenOperation<PoolUnderTest, Model> giveBack = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"Return(#{index})",
            (actual, index) => actual.Return(index),
            (model, index) => model.Return(index));
        GenOperation<PoolUnderTest, Model> returnAndRentAgain = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"ReturnAndRentAgain(#{index})",
            (actual, index) => actual.ReturnAndRentAgain(index),
            (model, index) => model.ReturnAndRentAgain(index));
        GenOperation<PoolUnderTest, Model> trim = Gen.Const(0).Operation<PoolUnderTest, Model>(
            _ => "Trim()",
            (actual, _) => actual.Pool.Trim(),
            (_, _) => { });
        GenOperation<PoolUnderTest, Model> otherPool = Gen.Const(0).Operation<PoolUnderTest, Model>(
            _ => "UseAnotherPool()",
            (actual, _) => actual.UseAnotherPool(),
            (_, _) => { });

        Gen<(PoolUnderTest Actual, Model Model)> initial = Gen.Select(Gen.Int[1, 5], Gen.OneOfConst(0L, 8_192L, 1L << 30))
            .Select(options => (new PoolUnderTest(options.Item1, options.Item2), new Model()));
        Check.SampleModelBased(initial, [rent, rent, rent, giveBack, giveBack, returnAndRentAgain, trim, otherPool], Matches, iter: 200);
    }

    private static bool Matches(PoolUnderTest actual, Model model)
    {
        if (actual.Live.Count != model.Live.Count)
        {
            return false;
        }

        // Each live array is held once and still holds what was written into it.
        var instances = new HashSet<byte[]>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < model.Live.Count; i++)
        {
            (byte[] array, byte stamp) = actual.Live[i];
            if (!instances.Add(array) || stamp != model.Live[i].Stamp || array.Length < model.Live[i].Length || array.AsSpan().IndexOfAnyExcept(stamp) >= 0)
            {
                return false;
            }
        }

        // The counts add up exactly: every array allocated is in use, cached, or was dropped.
        TierStatistics arrays = actual.Pool.GetStatistics().Arrays;
        return arrays.Rents == model.Rents
            && arrays.Returns == model.Returns
            && arrays.CacheHits + arrays.CacheMisses == arrays.Rents
            && arrays.BytesInUse == actual.Live.Sum(entry => (long)entry.Array.Length)
            && arrays.BytesAllocated == arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted;
    }

    internal sealed class PoolUnderTest(int threadCacheMaxArrays, long sharedCacheMaxBytes)
    {
        private readonly TieredArrayPool _other = new();

        public TieredArrayPool Pool { get; } = new(new TieredArrayPoolOptions
        {
            ThreadCacheMaxArrays = threadCacheMaxArrays,
            ThreadCacheMaxBytesPerClass = 64 * 1024,
            SharedCacheMaxBytes = sharedCacheMaxBytes,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        });

        public List<(byte[] Array, byte Stamp)> Live { get; } = [];

        public void Rent(int length, byte stamp)
        {
            byte[] array = Pool.Rent(length);
            array.AsSpan().Fill(stamp);
            Live.Add((array, stamp));
        }

        public void Return(int index)
        {
            if (Live.Count > 0)
            {
                Pool.Return(Live[index % Live.Count].Array);
                Live.RemoveAt(index % Live.Count);
            }
        }

        /// <summary>Every class is cached per thread (at least one array, even past the byte budget): the array just returned comes back.</summary>
        public void ReturnAndRentAgain(int index)
        {
            if (Live.Count > 0)
            {
                byte[] array = Live[index % Live.Count].Array;
                Pool.Return(array);
                Assert.Same(array, Pool.Rent(array.Length));
            }
        }

        /// <summary>Makes the other pool this thread's last used, so the next call of the pool under test takes its slow path.</summary>
        public void UseAnotherPool() => _other.Return(_other.Rent(64));

        public override string ToString() => $"{Live.Count} live";
    }

    internal sealed class Model
    {
        public List<(int Length, byte Stamp)> Live { get; } = [];

        public long Rents { get; private set; }

        public long Returns { get; private set; }

        public void Rent(int length, byte stamp)
        {
            Live.Add((length, stamp));
            Rents++;
        }

        public void Return(int index)
        {
            if (Live.Count > 0)
            {
                Live.RemoveAt(index % Live.Count);
                Returns++;
            }
        }

        public void ReturnAndRentAgain(int index)
        {
            if (Live.Count > 0)
            {
                Returns++;
                Rents++;
            }
        }

        public override string ToString() => $"{Live.Count} live";
    }
}
