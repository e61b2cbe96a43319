using System.Buffers;
using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// What diagnostic mode costs a 4 KB rent, one-byte write and dispose, called from 30 frames deep (a request handler's
/// stack, where a stack walk is not free): <see cref="DiagnosticLevel.Off"/>, <see cref="DiagnosticLevel.Sampled"/>
/// (one stack in <see cref="TieredMemoryPoolOptions.DiagnosticSampleRate"/>, default 128) and
/// <see cref="DiagnosticLevel.All"/> (every rent's and dispose's stack), against <see cref="MemoryPool{T}.Shared"/>.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class DiagnosticModeBenchmarks
{
    private const int BufferSize = 4096;
    private const int StackDepth = 30;
    private const int Operations = 256;

    private TieredMemoryPool _pool = null!;

    [Params(DiagnosticLevel.Off, DiagnosticLevel.Sampled, DiagnosticLevel.All)]
    public DiagnosticLevel Level { get; set; }

    [GlobalSetup]
    public void Setup() => _pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = Level });

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Operations)]
    public int Shared() => Deep(MemoryPool<byte>.Shared, StackDepth);

    [Benchmark(OperationsPerInvoke = Operations)]
    public int Tiered() => Deep(_pool, StackDepth);

    // Not inlined, so every level is a frame a stack walk goes through.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Deep(MemoryPool<byte> pool, int depth) => depth == 0 ? RentWriteDispose(pool) : Deep(pool, depth - 1) + 1;

    private static int RentWriteDispose(MemoryPool<byte> pool)
    {
        for (int i = 0; i < Operations; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(BufferSize);
            owner.Memory.Span[0] = 1;
            owner.Dispose();
        }

        return 0;
    }
}
