using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Adaptive caches, judged on counts rather than time: 1 M rents at 4 KB, then 1 M at 64 KB, then 1 M at 1 KB, in
/// bursts of 256 live buffers, then 1 KB traffic for another 1.5 idle delays, with adaptation on and off. Per phase,
/// after a warm-up of 10 k rents: the share of rents served from the cache and the mmap calls. Per class that went
/// cold: the bytes it held when it went cold and one delay (plus the tick that notices it) later. A fake clock makes
/// each phase half an idle delay long, so a cold class is judged while the pool is still busy with another.
/// </summary>
public static class PhaseShiftReport
{
    private const int RentsPerPhase = 1_000_000;
    private const int WarmUpRents = 10_000;
    private const int Live = 256;
    private const int StepsPerPhase = 4;
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_step = s_delay / 8;
    private static readonly int[] s_phases = [4096, 65536, 1024];

    public static void Run()
    {
        Console.WriteLine("| adaptation | phase | hit ratio after warm-up | mmap calls after warm-up |");
        Console.WriteLine("|---|---|---|---|");
        var cold = new List<string>();
        foreach (bool adaptive in new[] { true, false })
        {
            Phases(adaptive, cold);
        }

        Console.WriteLine();
        Console.WriteLine("| adaptation | class that went cold | held when it went cold | one delay later | fall |");
        Console.WriteLine("|---|---|---|---|---|");
        cold.ForEach(Console.WriteLine);
    }

    private static void Phases(bool adaptive, List<string> cold)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = adaptive, TimeProvider = time, IdleReleaseDelay = s_delay });
        var held = new IMemoryOwner<byte>[Live];
        var watched = new List<(int Size, DateTimeOffset Since, long Held)>();
        string label = adaptive ? "on" : "off";

        void Step()
        {
            time.Advance(s_step);
            foreach ((int size, DateTimeOffset since, long bytes) in watched.ToList())
            {
                if (time.GetUtcNow() - since >= s_delay + (s_delay / 4))
                {
                    long later = CachedBytes(pool.GetStatistics(), size);
                    double fall = bytes == 0 ? 0 : 1 - ((double)later / bytes);
                    cold.Add(Format($"| {label} | {size / 1024} KB | {bytes / 1024} KB | {later / 1024} KB | {fall:P0} |"));
                    watched.Remove((size, since, bytes));
                }
            }
        }

        int previous = 0;
        foreach (int size in s_phases)
        {
            if (previous != 0)
            {
                watched.Add((previous, time.GetUtcNow(), CachedBytes(pool.GetStatistics(), previous)));
            }

            long hitsBefore = 0, rentsBefore = 0, mapsBefore = 0;
            for (int rent = 0; rent < RentsPerPhase; rent += Live)
            {
                if (rent == WarmUpRents - (WarmUpRents % Live))
                {
                    TieredMemoryPoolStatistics warm = pool.GetStatistics();
                    (hitsBefore, rentsBefore, mapsBefore) = (Hits(warm), Rents(warm), warm.MmapCalls);
                }

                Burst(pool, held, size);
                if (rent % (RentsPerPhase / StepsPerPhase) < Live)
                {
                    Step();
                }
            }

            TieredMemoryPoolStatistics end = pool.GetStatistics();
            double hitRatio = (double)(Hits(end) - hitsBefore) / (Rents(end) - rentsBefore);
            Console.WriteLine(Format($"| {label} | {size / 1024} KB | {hitRatio:P2} | {end.MmapCalls - mapsBefore} |"));
            previous = size;
        }

        // The last phase's traffic goes on until every watched class has had its delay.
        while (watched.Count > 0)
        {
            for (int rent = 0; rent < RentsPerPhase / StepsPerPhase; rent += Live)
            {
                Burst(pool, held, previous);
            }

            Step();
        }
    }

    private static void Burst(TieredMemoryPool pool, IMemoryOwner<byte>[] held, int size)
    {
        for (int i = 0; i < held.Length; i++)
        {
            held[i] = pool.Rent(size);
        }

        foreach (IMemoryOwner<byte> owner in held)
        {
            owner.Dispose();
        }
    }

    private static long Hits(TieredMemoryPoolStatistics statistics) => statistics.Medium.CacheHits + statistics.Large.CacheHits;

    private static long Rents(TieredMemoryPoolStatistics statistics) => statistics.Medium.Rents + statistics.Large.Rents;

    private static long CachedBytes(TieredMemoryPoolStatistics statistics, int size) =>
        statistics.SizeHistogram.Where(row => row.ClassSize == size).Sum(row => row.Cached * row.ClassSize);

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
