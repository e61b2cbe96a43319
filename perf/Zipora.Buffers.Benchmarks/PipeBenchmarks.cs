using System.Buffers;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>1 GB through a Pipe in writes of 4 to 64 KB with a concurrent reader, per pool (the reader touches every cache line).</summary>
/// <remarks>
/// Measured with three launches (<c>--launchCount 3</c>): one process's run of this case varied by ±60% on the default
/// pool. No job attribute, so the smoke run's Dry job is the only one it runs.
/// </remarks>
[MemoryDiagnoser]
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
