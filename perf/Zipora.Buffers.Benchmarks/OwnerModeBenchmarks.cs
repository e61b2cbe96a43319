using System.Buffers;
using System.Threading;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// What the owner mode costs at the headline size, 4 KB: the default tiered pool (a fresh owner per rent) against
/// <see cref="TieredMemoryPoolOptions.ReuseOwners"/> (the block's own owner again) and the peers, in one run so the
/// ratios are comparable. Steady: rent, write one byte through the span, return. Burst: rent 100, write one byte into
/// each (its only page), then return all 100. Both report the time and the allocation per buffer. It creates its own
/// pools rather than deriving from <see cref="PeerPoolBenchmarks"/>, whose property names its method names would hide.
/// </summary>
[MemoryDiagnoser]
[MedianColumn] // The headline is read as medians: a noisy shared VM skews the means.
public class OwnerModeBenchmarks
{
    private const int BufferSize = 4096;
    private const int BurstCount = 100;

    // Both workloads rent this many buffers per invocation (steady: one after another; burst: 10 bursts of 100), so
    // one OperationsPerInvoke serves both and every row reads as "per buffer".
    private const int Operations = 1_000;
    private const int BurstsPerInvoke = Operations / BurstCount;

    private readonly IMemoryOwner<byte>[] _owners = new IMemoryOwner<byte>[BurstCount];
    private readonly byte[][] _arrays = new byte[BurstCount][];
    private TieredMemoryPool _tieredDefault = null!;
    private TieredMemoryPool _tieredReuseOwners = null!;
    private MemoryPool<byte> _kestrel = null!;
    private MinimalNativePool _floorReused = null!;
    private MinimalNativePool _floorSafe = null!;
    private MinimalSafeNativePool _floorReusedSafely = null!;
    private IMemoryOwner<byte>? _atomicTarget;

    /// <summary>
    /// How many buffers are held at once: one (steady) or a burst of 100; or one at a time with the memory left
    /// untouched (rent and dispose only: the pool's own overhead, issue 15's first goal).
    /// </summary>
    public enum Pattern
    {
        Steady,
        Burst,
        Untouched,
    }

    [ParamsAllValues]
    public Pattern Workload { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _tieredDefault = Peers.CreateTieredPool();
        _tieredReuseOwners = Peers.CreateTieredPoolReusingOwners();
        _kestrel = Peers.CreateKestrelPool();
        _floorReused = new MinimalNativePool(BufferSize, safeOwners: false);
        _floorSafe = new MinimalNativePool(BufferSize, safeOwners: true);
        _floorReusedSafely = new MinimalSafeNativePool(BufferSize);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tieredDefault.Dispose();
        _tieredReuseOwners.Dispose();
        _kestrel.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Operations)]
    public void Shared() => RentWriteReturn(MemoryPool<byte>.Shared);

    [Benchmark(OperationsPerInvoke = Operations)]
    public void TieredDefault() => RentWriteReturn(_tieredDefault);

    [Benchmark(OperationsPerInvoke = Operations)]
    public void TieredReuseOwners() => RentWriteReturn(_tieredReuseOwners);

    [Benchmark(OperationsPerInvoke = Operations)]
    public void Kestrel() => RentWriteReturn(_kestrel);

    /// <summary>Floor experiment: the least a native pool does per rent, handing out its blocks' own managers again.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorReusedOwners() => RentWriteReturn(_floorReused);

    /// <summary>Floor experiment: the same, with a fresh owner per rent disposed by one atomic exchange (what the default mode promises).</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorSafeOwners() => RentWriteReturn(_floorSafe);

    /// <summary>
    /// Floor experiment: the reused managers with what <see cref="TieredMemoryPoolOptions.ReuseOwners"/> promises on its
    /// fast path (a stale dispose refused, trims that can take a live thread's blocks, more than one pool).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorReusedOwnersKeepingThePromises() => RentWriteReturn(_floorReusedSafely);

    /// <summary>
    /// Floor experiment: <see cref="MemoryPool{T}.Shared"/> plus the one atomic exchange per dispose that would make
    /// its racing disposes harmless, which it does not pay today: the least a race-safe Shared would cost.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void SharedPlusOneAtomic() => RentWriteReturn(MemoryPool<byte>.Shared, disposeThroughAnAtomic: true);

    /// <summary>The same work on bare arrays: what a pool without owner objects costs.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void ArrayPoolShared()
    {
        ArrayPool<byte> pool = ArrayPool<byte>.Shared;
        if (Workload != Pattern.Burst)
        {
            for (int i = 0; i < Operations; i++)
            {
                byte[] array = pool.Rent(BufferSize);
                if (Workload == Pattern.Steady)
                {
                    array[0] = 1;
                }

                pool.Return(array);
            }

            return;
        }

        byte[][] arrays = _arrays;
        for (int burst = 0; burst < BurstsPerInvoke; burst++)
        {
            for (int i = 0; i < arrays.Length; i++)
            {
                arrays[i] = pool.Rent(BufferSize);
                arrays[i][0] = 1;
            }

            foreach (byte[] array in arrays)
            {
                pool.Return(array);
            }
        }
    }

    /// <summary>The work every pool does; <paramref name="disposeThroughAnAtomic"/> adds one exchange per dispose, for the floor experiment.</summary>
    private void RentWriteReturn(MemoryPool<byte> pool, bool disposeThroughAnAtomic = false)
    {
        if (Workload == Pattern.Steady)
        {
            for (int i = 0; i < Operations; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(BufferSize);
                owner.Memory.Span[0] = 1;
                Dispose(owner, disposeThroughAnAtomic);
            }

            return;
        }

        if (Workload == Pattern.Untouched)
        {
            for (int i = 0; i < Operations; i++)
            {
                Dispose(pool.Rent(BufferSize), disposeThroughAnAtomic);
            }

            return;
        }

        IMemoryOwner<byte>[] owners = _owners;
        for (int burst = 0; burst < BurstsPerInvoke; burst++)
        {
            for (int i = 0; i < owners.Length; i++)
            {
                owners[i] = pool.Rent(BufferSize);
                owners[i].Memory.Span[0] = 1;
            }

            foreach (IMemoryOwner<byte> owner in owners)
            {
                Dispose(owner, disposeThroughAnAtomic);
            }
        }
    }

    private void Dispose(IMemoryOwner<byte> owner, bool throughAnAtomic)
    {
        if (throughAnAtomic)
        {
            // The exchange a race-safe owner pays, on a field of its own, so the pool sees the same pattern as the
            // baseline: one buffer out at a time.
            _ = Interlocked.Exchange(ref _atomicTarget, owner);
        }

        owner.Dispose();
    }
}
