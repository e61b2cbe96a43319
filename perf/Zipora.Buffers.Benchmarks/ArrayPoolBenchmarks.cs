using System.Buffers;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// TieredArrayPool against ArrayPool&lt;byte&gt;.Shared: rent Depth arrays of Length, write a byte to each, return
/// them all; depth 1 is the steady single rent and return (16 B to 64 MB), depths 8, 32 and 100 the bursts (1, 4 and
/// 16 KB). Reported per rent and return pair.
/// </summary>
[MemoryDiagnoser]
public class ArrayPoolBenchmarks
{
    private const int PairsPerInvoke = 800;
    private TieredArrayPool _tiered = null!;
    private byte[][] _held = null!;

    [ParamsSource(nameof(Patterns))]
    public Burst Pattern { get; set; }

    public static Burst[] Patterns =>
    [
        new(1, 16), new(1, 64), new(1, 1024), new(1, 4096), new(1, 16384), new(1, 65536),
        new(1, 1 << 20), new(1, 4 << 20), new(1, 64 << 20),
        new(8, 1024), new(32, 1024), new(100, 1024),
        new(8, 4096), new(32, 4096), new(100, 4096),
        new(8, 16384), new(32, 16384), new(100, 16384),
    ];

    [GlobalSetup]
    public void Setup()
    {
        _tiered = new TieredArrayPool();
        _held = new byte[Pattern.Count][];
    }

    [Benchmark(OperationsPerInvoke = PairsPerInvoke)]
    public void TieredArrayPool() => Bursts(_tiered);

    [Benchmark(Baseline = true, OperationsPerInvoke = PairsPerInvoke)]
    public void ArrayPoolShared() => Bursts(ArrayPool<byte>.Shared);

    private void Bursts(ArrayPool<byte> pool)
    {
        for (int round = 0; round < PairsPerInvoke / Pattern.Count; round++)
        {
            for (int i = 0; i < _held.Length; i++)
            {
                byte[] array = pool.Rent(Pattern.Size);
                array[0] = 1;
                _held[i] = array;
            }

            foreach (byte[] array in _held)
            {
                pool.Return(array);
            }
        }
    }
}
