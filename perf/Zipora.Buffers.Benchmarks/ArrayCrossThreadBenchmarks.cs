using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;
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

    private static void RentHereReturnThere(ArrayPool<byte> pool)
    {
        var handoff = new ConcurrentQueue<byte[]>();
        int inFlight = 0;
        var reader = new Thread(() =>
        {
            int returned = 0;
            var spinner = new SpinWait();
            while (returned < Operations)
            {
                if (handoff.TryDequeue(out byte[]? array))
                {
                    pool.Return(array);
                    Interlocked.Decrement(ref inFlight);
                    returned++;
                }
                else
                {
                    spinner.SpinOnce(sleep1Threshold: -1);
                }
            }
        });
        reader.Start();
        var wait = new SpinWait();
        for (int i = 0; i < Operations; i++)
        {
            while (Volatile.Read(ref inFlight) >= 32)
            {
                wait.SpinOnce(sleep1Threshold: -1);
            }

            byte[] array = pool.Rent(Length);
            array[0] = 1;
            Interlocked.Increment(ref inFlight);
            handoff.Enqueue(array);
        }

        reader.Join();
    }
}
