using System.Buffers;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>1 GB through a Pipe in writes of 4 to 64 KB with a concurrent reader, per pool (the reader touches every cache line).</summary>
/// <remarks>Three launches: one process's run of this case varied by ±60% on the default pool.</remarks>
[MemoryDiagnoser]
[SimpleJob(launchCount: 3, warmupCount: 2, iterationCount: 8)]
public class PipeBenchmarks : PeerPoolBenchmarks
{
    private const long BytesPerRun = 1L << 30;

    [Benchmark(Baseline = true)]
    public Task<long> DefaultPool() => PipeTraffic.MoveAsync(MemoryPool<byte>.Shared, 1, BytesPerRun);

    [Benchmark]
    public Task<long> TieredMemoryPool() => PipeTraffic.MoveAsync(Tiered, 1, BytesPerRun);

    [Benchmark]
    public Task<long> ReusedOwners() => PipeTraffic.MoveAsync(TieredReuseOwners, 1, BytesPerRun);

    [Benchmark]
    public Task<long> KestrelPool() => PipeTraffic.MoveAsync(Kestrel, 1, BytesPerRun);
}
