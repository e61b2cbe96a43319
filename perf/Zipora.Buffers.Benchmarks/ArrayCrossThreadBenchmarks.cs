using System.Buffers;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The Pipe pattern with arrays: a writer thread rents 4 KB arrays, a reader thread returns them, 32 in flight. The
/// runtime's pool keeps returned arrays in the returning thread's slot, which the writer never sees.
/// </summary>
[MemoryDiagnoser]
public class ArrayCrossThreadBenchmarks
{
    private const int Operations = 200_000;
    private const int Length = 4096;
    private TieredArrayPool _tiered = null!;

    [GlobalSetup]
    public void Setup() => _tiered = new TieredArrayPool();

    [Benchmark]
    public void TieredArrayPool() => RentHereReturnThere(_tiered);

    [Benchmark(Baseline = true)]
    public void ArrayPoolShared() => RentHereReturnThere(ArrayPool<byte>.Shared);

    private static void RentHereReturnThere(ArrayPool<byte> pool) =>
        CrossThreadHandoff.Run(
            Operations,
            () =>
            {
                byte[] array = pool.Rent(Length);
                array[0] = 1;
                return array;
            },
            array => pool.Return(array));
}
