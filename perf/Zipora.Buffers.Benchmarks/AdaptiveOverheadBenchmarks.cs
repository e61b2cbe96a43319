using System.Buffers;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>The cost of adaptation on the hot path: steady 4 KB rent, one-byte write and dispose, adaptive caches on and off.</summary>
[MemoryDiagnoser]
public class AdaptiveOverheadBenchmarks
{
    private const int Operations = 1_000;
    private TieredMemoryPool _adaptive = null!;
    private TieredMemoryPool _fixed = null!;

    [GlobalSetup]
    public void Setup()
    {
        _adaptive = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = true });
        _fixed = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = false });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _adaptive.Dispose();
        _fixed.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public void AdaptationOn() => RentWriteDispose(_adaptive);

    [Benchmark(Baseline = true, OperationsPerInvoke = Operations)]
    public void AdaptationOff() => RentWriteDispose(_fixed);

    private static void RentWriteDispose(MemoryPool<byte> pool)
    {
        for (int i = 0; i < Operations; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(4096);
            owner.Memory.Span[0] = 1;
            owner.Dispose();
        }
    }
}
