using System.Buffers;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The pools a benchmark class measures besides the shared ones: a tiered pool and Kestrel's pool, created once per
/// class and disposed after it.
/// </summary>
public abstract class PeerPoolBenchmarks
{
    protected TieredMemoryPool Tiered { get; private set; } = null!;

    protected MemoryPool<byte> Kestrel { get; private set; } = null!;

    [GlobalSetup]
    public void Setup()
    {
        Tiered = Peers.CreateTieredPool();
        Kestrel = Peers.CreateKestrelPool();
        OnSetup();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        Tiered.Dispose();
        Kestrel.Dispose();
    }

    /// <summary>What a class sets up besides the pools (BenchmarkDotNet allows one global setup per class).</summary>
    protected virtual void OnSetup()
    {
    }
}
