using System.Buffers;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Many connections' worth of pipes at once, where a pool should matter for Pipelines: 256 MB per run spread over 64,
/// 256 or 1,024 pipes, each with its writer and reader on separate thread pool work items and up to its pause
/// threshold (64 KB) in flight. The default pool's per-core array stacks overflow into fresh arrays and collections.
/// Resident memory is measured by <see cref="ManyPipesReport"/> (<c>--many-pipes</c>), a process per pool.
/// </summary>
[MemoryDiagnoser]
public class ManyPipesBenchmarks : PeerPoolBenchmarks
{
    private const long BytesPerRun = 256L << 20;

    [Params(64, 256, 1024)]
    public int Pipes { get; set; }

    [Benchmark(Baseline = true)]
    public Task<long> DefaultPool() => PipeTraffic.MoveAsync(MemoryPool<byte>.Shared, Pipes, BytesPerRun / Pipes);

    [Benchmark]
    public Task<long> TieredMemoryPool() => PipeTraffic.MoveAsync(Tiered, Pipes, BytesPerRun / Pipes);

    [Benchmark]
    public Task<long> ReusedOwners() => PipeTraffic.MoveAsync(TieredReuseOwners, Pipes, BytesPerRun / Pipes);

    [Benchmark]
    public Task<long> KestrelPool() => PipeTraffic.MoveAsync(Kestrel, Pipes, BytesPerRun / Pipes);
}
