using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Memory efficiency, which is a ratio rather than a time: sizes drawn log-uniformly from 1 B to 4 MB, 512 buffers
/// live, 20,000 rents; at the end, bytes reserved for the live set over bytes requested by it, per pool.
/// </summary>
public static unsafe class MemoryEfficiencyReport
{
    private const int Rents = 20_000;
    private const int Live = 512;

    public static void Run()
    {
        Console.WriteLine("| pool | reserved / requested | what 'reserved' counts |");
        Console.WriteLine("|---|---|---|");
        Row("TieredMemoryPool", TieredRatio(), "bytes mapped from the OS (in use + cached + uncarved slab space), GetStatistics()");
        Row("TieredArrayPool", ArrayPoolRatio(new TieredArrayPool()), "lengths of the arrays handed out (a lower bound: pooled arrays are not counted)");
        Row("MemoryPool<byte>.Shared / ArrayPool<byte>.Shared", ArrayPoolRatio(ArrayPool<byte>.Shared), "lengths of the arrays handed out (a lower bound: pooled arrays are not counted)");
        if (Mimalloc.IsAvailable)
        {
            Row("mimalloc", MimallocRatio(), "mi_usable_size of the live blocks (a lower bound: free pages mimalloc keeps are not counted)");
        }
        else
        {
            Console.WriteLine("| mimalloc | not measured | libmimalloc.so.2 is not installed |");
        }

        Row("new byte[]", 1.0, "exact lengths (no pooling at all)");
    }

    private static void Row(string pool, double ratio, string what) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {pool} | {ratio:F3} | {what} |"));

    private static IEnumerable<int> Sizes()
    {
        var random = new Random(11);
        for (int i = 0; i < Rents; i++)
        {
            // log-uniform over [1, 4 MB]
            yield return (int)Math.Max(1, Math.Exp(random.NextDouble() * Math.Log(4 * 1024 * 1024)));
        }
    }

    private static double TieredRatio()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = System.Threading.Timeout.InfiniteTimeSpan });
        var live = new Queue<(IMemoryOwner<byte> Owner, int Size)>();
        long requested = 0;
        foreach (int size in Sizes())
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span[0] = 1;
            live.Enqueue((owner, size));
            requested += size;
            if (live.Count > Live)
            {
                (IMemoryOwner<byte> old, int oldSize) = live.Dequeue();
                old.Dispose();
                requested -= oldSize;
            }
        }

        // Caches hold what the churn left behind; what is idle goes back after the idle delay, so count the steady
        // state after a trim: what the pool keeps to serve the live set.
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        return (double)(statistics.BytesInUse + statistics.BytesRetained + statistics.BytesFragmented + statistics.BytesUncarved) / requested;
    }

    private static double ArrayPoolRatio(ArrayPool<byte> pool)
    {
        var live = new Queue<(byte[] Array, int Size)>();
        long requested = 0;
        long handedOut = 0;
        foreach (int size in Sizes())
        {
            byte[] array = pool.Rent(size);
            live.Enqueue((array, size));
            requested += size;
            handedOut += array.Length;
            if (live.Count > Live)
            {
                (byte[] old, int oldSize) = live.Dequeue();
                pool.Return(old);
                requested -= oldSize;
                handedOut -= old.Length;
            }
        }

        return (double)handedOut / requested;
    }

    private static double MimallocRatio()
    {
        var live = new Queue<(nint Block, int Size)>();
        long requested = 0;
        foreach (int size in Sizes())
        {
            live.Enqueue(((nint)Mimalloc.Malloc((nuint)size), size));
            requested += size;
            if (live.Count > Live)
            {
                (nint old, int oldSize) = live.Dequeue();
                Mimalloc.Free((void*)old);
                requested -= oldSize;
            }
        }

        long usable = 0;
        foreach ((nint block, _) in live)
        {
            usable += (long)Mimalloc.UsableSize((void*)block);
            Mimalloc.Free((void*)block);
        }

        return (double)usable / requested;
    }
}
