using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using CsCheck;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Random rents, disposes and dispose-then-rent sequences of the small and medium tiers on one thread, with thread
/// stacks of one to five blocks, fixed or adaptive, in both owner modes. Checked after each sequence: every block
/// carved is either in use or cached somewhere (a thread stack, a depot): none lost, none twice; and a block disposed
/// is the next one rented of its class (the stack's newest-first slot).
/// </summary>
public sealed class SlabStackModelTests
{
    private static readonly int[] s_sizes = [64, 1000, 1024, 4096, 9000];

    [Fact]
    public void EveryCarvedBlockIsInUseOrCachedAndTheNewestComesBackFirst()
    {
        GenOperation<PoolUnderTest, Model> rent = Gen.Select(Gen.Int[0, s_sizes.Length - 1], Gen.Byte[1, 255]).Operation<PoolUnderTest, Model>(
            operation => $"Rent({s_sizes[operation.Item1]}) <- {operation.Item2}",
            (actual, operation) => actual.Rent(s_sizes[operation.Item1], operation.Item2),
            (model, _) => model.Live++);
        GenOperation<PoolUnderTest, Model> dispose = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"Dispose(#{index})",
            (actual, index) => actual.Dispose(index),
            (model, _) => model.Live = Math.Max(0, model.Live - 1));
        GenOperation<PoolUnderTest, Model> disposeAndRentAgain = Gen.Int[0, 1000].Operation<PoolUnderTest, Model>(
            index => $"DisposeAndRentAgain(#{index})",
            (actual, index) => actual.DisposeAndRentAgain(index),
            (_, _) => { });

        Gen<(PoolUnderTest Actual, Model Model)> initial = Gen.Select(Gen.Int[1, 5], Gen.Bool, Gen.Bool)
            .Select(options => (new PoolUnderTest(options.Item1, options.Item2, options.Item3), new Model()));
        Check.SampleModelBased(initial, [rent, rent, rent, dispose, dispose, disposeAndRentAgain], Matches, iter: 150);
    }

    private static bool Matches(PoolUnderTest actual, Model model)
    {
        try
        {
            if (actual.Live.Count != model.Live)
            {
                return false;
            }

            // Each live block is held once and still holds what was written into it.
            var addresses = new HashSet<nint>();
            foreach ((IMemoryOwner<byte> owner, byte stamp, _) in actual.Live)
            {
                if (!addresses.Add(OwnerAddress.Of(owner)) || owner.Memory.Span.IndexOfAnyExcept(stamp) >= 0)
                {
                    return false;
                }
            }

            // With no trim, a carved block is never freed: each miss carved one, and each is in use or cached.
            TieredMemoryPoolStatistics statistics = actual.Pool.GetStatistics();
            long carved = statistics.Small.CacheMisses + statistics.Medium.CacheMisses;
            long cached = statistics.SizeHistogram.Sum(bucket => bucket.Cached);
            return carved == actual.Live.Count + cached
                && statistics.Small.Rents + statistics.Medium.Rents == statistics.Small.CacheHits + statistics.Small.CacheMisses + statistics.Medium.CacheHits + statistics.Medium.CacheMisses;
        }
        finally
        {
            actual.Pool.Dispose();
        }
    }

    internal sealed class PoolUnderTest(int threadCacheMaxBuffers, bool adaptive, bool reuseOwners)
    {
        public TieredMemoryPool Pool { get; } = new(new TieredMemoryPoolOptions
        {
            ThreadCacheMaxBuffers = threadCacheMaxBuffers,
            AdaptiveCaches = adaptive,
            ReuseOwners = reuseOwners,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
            EnableHugepages = false,
        });

        public List<(IMemoryOwner<byte> Owner, byte Stamp, int Size)> Live { get; } = [];

        public void Rent(int size, byte stamp)
        {
            IMemoryOwner<byte> owner = Pool.Rent(size);
            owner.Memory.Span.Fill(stamp);
            Live.Add((owner, stamp, size));
        }

        public void Dispose(int index)
        {
            if (Live.Count > 0)
            {
                Live[index % Live.Count].Owner.Dispose();
                Live.RemoveAt(index % Live.Count);
            }
        }

        /// <summary>The block just disposed is the next one rented of its class, whatever the stack held before.</summary>
        public void DisposeAndRentAgain(int index)
        {
            if (Live.Count > 0)
            {
                // Rented again with the size first asked for: a reused owner's memory is its whole block, which may
                // belong to the next tier's classes.
                (IMemoryOwner<byte> owner, byte stamp, int size) = Live[index % Live.Count];
                nint address = OwnerAddress.Of(owner);
                owner.Dispose();
                IMemoryOwner<byte> again = Pool.Rent(size);
                Assert.Equal(address, OwnerAddress.Of(again));
                Live[index % Live.Count] = (again, stamp, size);
            }
        }

        public override string ToString() => $"{Live.Count} live (ThreadCacheMaxBuffers {threadCacheMaxBuffers}, AdaptiveCaches {adaptive}, ReuseOwners {reuseOwners})";
    }

    internal sealed class Model
    {
        public int Live { get; set; }

        public override string ToString() => $"{Live} live";
    }
}
