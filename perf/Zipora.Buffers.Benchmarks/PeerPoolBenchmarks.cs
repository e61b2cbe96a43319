using System.Buffers;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The pools a benchmark class measures besides the shared ones: a tiered pool in each owner mode and Kestrel's pool,
/// created once per class and disposed after it.
/// </summary>
public abstract class PeerPoolBenchmarks
{
    /// <summary>The default pool: a fresh owner object per rent.</summary>
    protected TieredMemoryPool Tiered { get; private set; } = null!;

    /// <summary>A second pool with <see cref="TieredMemoryPoolOptions.ReuseOwners"/>, so both owner modes are measured in one run.</summary>
    protected TieredMemoryPool TieredReuseOwners { get; private set; } = null!;

    protected MemoryPool<byte> Kestrel { get; private set; } = null!;

    [GlobalSetup]
    public void Setup()
    {
        Tiered = Peers.CreateTieredPool();
        TieredReuseOwners = Peers.CreateTieredPoolReusingOwners();
        Kestrel = Peers.CreateKestrelPool();
        OnSetup();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        Tiered.Dispose();
        TieredReuseOwners.Dispose();
        Kestrel.Dispose();
    }

    /// <summary>What a class sets up besides the pools (BenchmarkDotNet allows one global setup per class).</summary>
    protected virtual void OnSetup()
    {
    }
}
