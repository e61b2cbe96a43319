using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Threads renting and returning 4 KB buffers at once (each thread does the same number of operations, so the
/// time for 2 threads over the time for 1 shows the scaling), and the Pipe pattern: one thread rents, another
/// disposes.
/// </summary>
[MemoryDiagnoser]
public class ConcurrencyBenchmarks
{
    private const int OperationsPerThread = 200_000;
    private const int BufferSize = 4096;
    private TieredMemoryPool _tiered = null!;
    private MemoryPool<byte> _kestrel = null!;

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

    [GlobalSetup]
    public void Setup()
    {
        _tiered = Peers.CreateTieredPool();
        _kestrel = Peers.CreateKestrelPool();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tiered.Dispose();
        _kestrel.Dispose();
    }

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
        var handoff = new ConcurrentQueue<IMemoryOwner<byte>>();
        int inFlight = 0;
        var reader = new Thread(() =>
        {
            int disposed = 0;
            var spinner = new SpinWait();
            while (disposed < OperationsPerThread)
            {
                if (handoff.TryDequeue(out IMemoryOwner<byte>? owner))
                {
                    owner.Dispose();
                    Interlocked.Decrement(ref inFlight);
                    disposed++;
                }
                else
                {
                    spinner.SpinOnce(sleep1Threshold: -1);
                }
            }
        });
        reader.Start();
        var wait = new SpinWait();
        for (int i = 0; i < OperationsPerThread; i++)
        {
            while (Volatile.Read(ref inFlight) >= 32)
            {
                wait.SpinOnce(sleep1Threshold: -1);
            }

            IMemoryOwner<byte> owner = pool.Rent(BufferSize);
            owner.Memory.Span[0] = 1;
            Interlocked.Increment(ref inFlight);
            handoff.Enqueue(owner);
        }

        reader.Join();
    }

    private MemoryPool<byte> Selected() => Pool switch
    {
        PoolKind.Tiered => _tiered,
        PoolKind.Kestrel => _kestrel,
        _ => MemoryPool<byte>.Shared,
    };
}
