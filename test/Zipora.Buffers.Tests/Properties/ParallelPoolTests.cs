using System;
using System.Buffers;
using System.Threading;
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

        // A caller's bugs, which the default owners make harmless: the same owner disposed by two threads at once,
        // and an owner disposed again after others rented since.
        GenOperation<PoolState> racingDisposes = Gen.Select(Gen.Int[0, s_sizes.Length - 1], Gen.Byte[1, 255]).Operation<PoolState>(
            operation => $"RentWriteDisposeTwiceAtOnce({s_sizes[operation.Item1]})",
            (state, operation) => state.RentWriteDisposeTwiceAtOnce(s_sizes[operation.Item1], operation.Item2));
        GenOperation<PoolState> staleDispose = Gen.Const(0).Operation<PoolState>(_ => "DisposeAStaleOwner()", (state, _) => state.DisposeAStaleOwner());

        Check.SampleParallel(
            Gen.Int.Select(_ => new PoolState()),
            rentWriteDispose,
            rentWriteDispose,
            racingDisposes,
            staleDispose,
            trim,
            equal: (a, b) => a.Summary() == b.Summary(),
            iter: 40,
            threads: 4);
    }

    internal sealed class PoolState
    {
        private IMemoryOwner<byte>? _stale;

        public TieredMemoryPool Pool { get; } = new(new TieredMemoryPoolOptions { IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });

        public void RentWriteDispose(int size, byte stamp)
        {
            IMemoryOwner<byte> owner = Pool.Rent(size);
            owner.Memory.Span.Fill(stamp);
            Assert.True(owner.Memory.Span.IndexOfAnyExcept(stamp) < 0, "a live buffer was written by someone else");
            owner.Dispose();
            Volatile.Write(ref _stale, owner);
        }

        public void RentWriteDisposeTwiceAtOnce(int size, byte stamp)
        {
            IMemoryOwner<byte> owner = Pool.Rent(size);
            owner.Memory.Span.Fill(stamp);
            Assert.True(owner.Memory.Span.IndexOfAnyExcept(stamp) < 0, "a live buffer was written by someone else");
            // A thread of its own, so the race cannot wait for a busy thread pool.
            using var bothReady = new Barrier(2);
            var other = new Thread(() =>
            {
                bothReady.SignalAndWait();
                owner.Dispose();
            });
            other.Start();
            bothReady.SignalAndWait();
            owner.Dispose();
            other.Join();
        }

        public void DisposeAStaleOwner() => Volatile.Read(ref _stale)?.Dispose();

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
