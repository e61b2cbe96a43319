using System;
using System.Buffers;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Threads renting and returning 4 KB buffers at once (each thread does the same number of operations, so the
/// time for 2 threads over the time for 1 shows the scaling), and the Pipe pattern: one thread rents, another
/// disposes.
/// </summary>
[MemoryDiagnoser]
public class ConcurrencyBenchmarks : PeerPoolBenchmarks
{
    private const int OperationsPerThread = 200_000;
    private const int BufferSize = 4096;

    [Params(1, 2, 0)]
    public int Threads { get; set; }

    [ParamsAllValues]
    public PoolKind Pool { get; set; }

    public enum PoolKind
    {
        Tiered,
        MemoryPoolShared,
        Kestrel,
    }

    private int ThreadCount => Threads == 0 ? Environment.ProcessorCount : Threads;

    /// <summary>Every thread rents, writes and disposes its own buffers.</summary>
    [Benchmark]
    public void RentAndReturnOnEachThread()
    {
        MemoryPool<byte> pool = Selected();
        Parallel.For(0, ThreadCount, new ParallelOptions { MaxDegreeOfParallelism = ThreadCount }, _ =>
        {
            for (int i = 0; i < OperationsPerThread; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(BufferSize);
                owner.Memory.Span[0] = 1;
                owner.Dispose();
            }
        });
    }

    /// <summary>A writer thread rents and writes, a reader thread disposes (as a Pipe's reader does), 32 in flight.</summary>
    [Benchmark]
    public void RentOnOneThreadReturnOnAnother()
    {
        MemoryPool<byte> pool = Selected();
        CrossThreadHandoff.Run(
            OperationsPerThread,
            () =>
            {
                IMemoryOwner<byte> owner = pool.Rent(BufferSize);
                owner.Memory.Span[0] = 1;
                return owner;
            },
            static owner => owner.Dispose());
    }

    private MemoryPool<byte> Selected() => Pool switch
    {
        PoolKind.Tiered => Tiered,
        PoolKind.Kestrel => Kestrel,
        _ => MemoryPool<byte>.Shared,
    };
}
