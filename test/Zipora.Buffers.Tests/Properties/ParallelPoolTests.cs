using System;
using System.Buffers;
using CsCheck;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Operations run in parallel on one pool, then CsCheck looks for a sequential order that explains the outcome:
/// each operation must be atomic as seen by the statistics, and no buffer may be corrupted meanwhile.
/// </summary>
public sealed class ParallelPoolTests
{
    private static readonly int[] s_sizes = [64, 900, 4096, 16384, 50_000, 3_000_000];

    [Fact]
    public void RentDisposeTrimAndStatisticsAreLinearizable()
    {
        GenOperation<PoolState> rentWriteDispose = Gen.Select(Gen.Int[0, s_sizes.Length - 1], Gen.Byte[1, 255]).Operation<PoolState>(
            operation => $"RentWriteDispose({s_sizes[operation.Item1]})",
            (state, operation) => state.RentWriteDispose(s_sizes[operation.Item1], operation.Item2));
        GenOperation<PoolState> trim = Gen.Const(0).Operation<PoolState>(_ => "Trim()", (state, _) => state.Pool.Trim());

        Check.SampleParallel(
            Gen.Int.Select(_ => new PoolState()),
            rentWriteDispose,
            rentWriteDispose,
            trim,
            equal: (a, b) => a.Summary() == b.Summary(),
            iter: 40,
            threads: 4);
    }

    internal sealed class PoolState
    {
        public TieredMemoryPool Pool { get; } = new(new TieredMemoryPoolOptions { IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });

        public void RentWriteDispose(int size, byte stamp)
        {
            IMemoryOwner<byte> owner = Pool.Rent(size);
            owner.Memory.Span.Fill(stamp);
            Assert.True(owner.Memory.Span.IndexOfAnyExcept(stamp) < 0, "a live buffer was written by someone else");
            owner.Dispose();
        }

        /// <summary>What any order of the operations must agree on: rents and returns per tier, nothing in use.</summary>
        public string Summary()
        {
            TieredMemoryPoolStatistics statistics = Pool.GetStatistics();
            return $"{statistics.Small.Rents}/{statistics.Small.Returns} {statistics.Medium.Rents}/{statistics.Medium.Returns} " +
                $"{statistics.Large.Rents}/{statistics.Large.Returns} {statistics.Huge.Rents}/{statistics.Huge.Returns} in use {statistics.BytesInUse}";
        }

        public override string ToString() => Summary();
    }
}
