using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using CsCheck;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Random sequences of rent, write, verify, dispose and trim across every tier, checked against a model that only
/// remembers which buffers are live and what was written into them. With owners of their own per rent (the default)
/// the sequences also dispose owners again long after their first dispose, and touch their stale memory: the model
/// says neither does anything but throw.
/// </summary>
public sealed class PoolModelTests
{
    private static readonly int[] s_sizes = [1, 15, 100, 1023, 1024, 3000, 4096, 16384, 16385, 70_000, 2 * 1024 * 1024, (2 * 1024 * 1024) + 1, 2_900_000];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ThePoolBehavesLikeItsModel(bool reuseOwners)
    {
        GenOperation<PoolUnderTest, Model> rent = Gen.Select(Gen.Int[0, s_sizes.Length - 1], Gen.Byte[1, 255]).Operation<PoolUnderTest, Model>(
            operation => $"Rent({s_sizes[operation.Item1]}) <- {operation.Item2}",
            (actual, operation) => actual.Rent(s_sizes[operation.Item1], operation.Item2),
            (model, operation) => model.Rent(s_sizes[operation.Item1], operation.Item2));
        GenOperation<PoolUnderTest, Model> dispose = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"Dispose(#{index})",
            (actual, index) => actual.Dispose(index),
            (model, index) => model.Dispose(index));
        GenOperation<PoolUnderTest, Model> trim = Gen.Const(0).Operation<PoolUnderTest, Model>(
            _ => "Trim()",
            (actual, _) => actual.Pool.Trim(),
            (_, _) => { });
        GenOperation<PoolUnderTest, Model> staleDispose = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"DisposeAgain(#{index})",
            (actual, index) => actual.DisposeAgain(index),
            (_, _) => { });

        GenOperation<PoolUnderTest, Model> disposeElsewhere = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"DisposeOnAThreadThatEnds(#{index})",
            (actual, index) => actual.DisposeOnAThreadThatEnds(index),
            (model, index) => model.Dispose(index));
        GenOperation<PoolUnderTest, Model> failedTrim = Gen.Int[0, 8].Operation<PoolUnderTest, Model>(
            slabsFirst => $"TrimFailingAfter({slabsFirst} slabs)",
            (actual, slabsFirst) => actual.TrimFailingAfter(slabsFirst),
            (_, _) => { });

        Gen<(PoolUnderTest Actual, Model Model)> initial = Gen.Int.Select(_ => (new PoolUnderTest(reuseOwners), new Model()));
        GenOperation<PoolUnderTest, Model>[] operations = reuseOwners
            ? [rent, rent, dispose, disposeElsewhere, trim, failedTrim]
            : [rent, rent, dispose, disposeElsewhere, trim, failedTrim, staleDispose];
        Check.SampleModelBased(initial, operations, Matches, iter: int.TryParse(Environment.GetEnvironmentVariable("ZIPORA_MODEL_ITERATIONS"), out int iterations) ? iterations : 60);
    }

    private static bool Matches(PoolUnderTest actual, Model model)
    {
        try
        {
            if (actual.Live.Count != model.Live.Count)
            {
                return false;
            }

            // Contents preserved: every live buffer still holds what was written into it.
            for (int i = 0; i < model.Live.Count; i++)
            {
                (IMemoryOwner<byte> owner, byte stamp) = actual.Live[i];
                if (stamp != model.Live[i].Stamp || owner.Memory.Length < model.Live[i].Size || owner.Memory.Span.IndexOfAnyExcept(stamp) >= 0)
                {
                    return false;
                }
            }

            // No two live buffers overlap.
            var sorted = actual.Live.OrderBy(entry => OwnerAddress.Of(entry.Owner)).ToList();
            for (int i = 1; i < sorted.Count; i++)
            {
                IMemoryOwner<byte> previous = sorted[i - 1].Owner;
                if (OwnerAddress.Of(previous) + previous.Memory.Length > OwnerAddress.Of(sorted[i].Owner))
                {
                    return false;
                }
            }

            // The statistics equal the model's counts, tier by tier.
            TieredMemoryPoolStatistics statistics = actual.Pool.GetStatistics();
            TierStatistics[] tiers = [statistics.Small, statistics.Medium, statistics.Large, statistics.Huge];
            for (int tier = 0; tier < tiers.Length; tier++)
            {
                if (tiers[tier].Rents != model.Rents[tier] || tiers[tier].Returns != model.Returns[tier])
                {
                    return false;
                }
            }

            return statistics.BytesInUse == actual.Live.Sum(entry => (long)entry.Owner.Memory.Length);
        }
        finally
        {
            actual.Pool.Dispose();
        }
    }

    private static int TierOf(int size) => size switch
    {
        < 1024 => 0,
        <= 16384 => 1,
        <= 2 * 1024 * 1024 => 2,
        _ => 3,
    };

    internal sealed class PoolUnderTest(bool reuseOwners)
    {
        public TieredMemoryPool Pool { get; } = new(new TieredMemoryPoolOptions { IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan, ReuseOwners = reuseOwners });

        public List<(IMemoryOwner<byte> Owner, byte Stamp)> Live { get; } = [];

        /// <summary>Owners disposed so far, with the memory they handed out, to be disposed and touched again.</summary>
        public List<(IMemoryOwner<byte> Owner, Memory<byte> Memory)> Disposed { get; } = [];

        public void Rent(int size, byte stamp)
        {
            IMemoryOwner<byte> owner = Pool.Rent(size);
            owner.Memory.Span.Fill(stamp);
            Live.Add((owner, stamp));
        }

        public void Dispose(int index)
        {
            if (Live.Count > 0)
            {
                IMemoryOwner<byte> owner = Live[index % Live.Count].Owner;
                Memory<byte> memory = owner.Memory;
                owner.Dispose();
                Live.RemoveAt(index % Live.Count);
                Disposed.Add((owner, memory));
            }
        }

        /// <summary>Disposes a live owner on a thread that then ends: its block waits in a cache the thread leaves behind.</summary>
        public void DisposeOnAThreadThatEnds(int index)
        {
            var thread = new System.Threading.Thread(() => Dispose(index));
            thread.Start();
            thread.Join();
        }

        /// <summary>A trim of the slab tiers that fails before the slab after <paramref name="slabsFirst"/> others (if it gets that far).</summary>
        public void TrimFailingAfter(int slabsFirst)
        {
            SlabTrimFault.FailAfter(Pool, slabsFirst);
            try
            {
                Exception? thrown = Record.Exception(Pool.Trim);
                Assert.True(thrown is null || ReferenceEquals(thrown, SlabTrimFault.OutOfMemory), $"the trim threw {thrown}");
            }
            finally
            {
                SlabTrimFault.Disarm(Pool);
            }
        }

        /// <summary>A caller's bug: an owner disposed before, maybe long before, is disposed again and its memory touched.</summary>
        public void DisposeAgain(int index)
        {
            if (Disposed.Count > 0)
            {
                (IMemoryOwner<byte> owner, Memory<byte> memory) = Disposed[index % Disposed.Count];
                owner.Dispose();
                Assert.Throws<ObjectDisposedException>(() => memory.Span.Length);
                Assert.Throws<ObjectDisposedException>(() => owner.Memory);
            }
        }

        public override string ToString() => $"{Live.Count} live";
    }

    internal sealed class Model
    {
        public List<(int Size, byte Stamp)> Live { get; } = [];

        public long[] Rents { get; } = new long[4];

        public long[] Returns { get; } = new long[4];

        public void Rent(int size, byte stamp)
        {
            Live.Add((size, stamp));
            Rents[TierOf(size)]++;
        }

        public void Dispose(int index)
        {
            if (Live.Count > 0)
            {
                Returns[TierOf(Live[index % Live.Count].Size)]++;
                Live.RemoveAt(index % Live.Count);
            }
        }

        public override string ToString() => $"{Live.Count} live";
    }
}
