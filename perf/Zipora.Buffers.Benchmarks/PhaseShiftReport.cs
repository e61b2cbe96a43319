using System;
using System.Buffers;
using System.Globalization;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Adaptive caches, judged on counts rather than time: 1 M rents at 4 KB, then 1 M at 64 KB, then 1 M at 1 KB, in
/// bursts of 256 live buffers, with adaptation on and off. Per phase, after a warm-up of 10 k rents: the share of
/// rents served from the cache, the mmap calls, and the bytes the pool retains. The clock is a fake one advanced a
/// quarter delay every 1/8 of a phase, so each phase spans two idle delays and the previous phase's class has the
/// whole delay to go cold.
/// </summary>
public static class PhaseShiftReport
{
    private const int RentsPerPhase = 1_000_000;
    private const int WarmUpRents = 10_000;
    private const int Live = 256;
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(10);

    public static void Run()
    {
        Console.WriteLine("| adaptation | phase | hit ratio after warm-up | mmap calls after warm-up | retained at phase end | previous class cached at its end / one delay later |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (bool adaptive in new[] { true, false })
        {
            Phases(adaptive);
        }
    }

    private static void Phases(bool adaptive)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { AdaptiveCaches = adaptive, TimeProvider = time, IdleReleaseDelay = s_delay });
        var held = new IMemoryOwner<byte>[Live];
        int previousSize = 0;
        long previousCachedAtEnd = 0;
        foreach (int size in new[] { 4096, 65536, 1024 })
        {
            long hitsBefore = 0, rentsBefore = 0, mapsBefore = 0;
            long previousCachedLater = -1;
            for (int rent = 0; rent < RentsPerPhase; rent += Live)
            {
                if (rent == WarmUpRents - (WarmUpRents % Live))
                {
                    TieredMemoryPoolStatistics warm = pool.GetStatistics();
                    (hitsBefore, rentsBefore, mapsBefore) = (Hits(warm), Rents(warm), warm.MmapCalls);
                }

                for (int i = 0; i < Live; i++)
                {
                    held[i] = pool.Rent(size);
                }

                foreach (IMemoryOwner<byte> owner in held)
                {
                    owner.Dispose();
                }

                if (rent % (RentsPerPhase / 8) < Live)
                {
                    time.Advance(s_delay / 4);
                }

                if (previousCachedLater < 0 && rent >= (RentsPerPhase / 8) * 5)
                {
                    // Five quarter delays in: one whole delay plus the tick that notices it.
                    previousCachedLater = CachedBytes(pool.GetStatistics(), previousSize);
                }
            }

            TieredMemoryPoolStatistics end = pool.GetStatistics();
            double hitRatio = (double)(Hits(end) - hitsBefore) / (Rents(end) - rentsBefore);
            string fall = previousSize == 0 ? "-" : Format($"{previousCachedAtEnd / 1024} KB / {previousCachedLater / 1024} KB");
            Console.WriteLine(Format($"| {(adaptive ? "on" : "off")} | {size / 1024} KB | {hitRatio:P2} | {end.MmapCalls - mapsBefore} | {end.BytesRetained / 1024} KB | {fall} |"));
            previousSize = size;
            previousCachedAtEnd = CachedBytes(end, size);
        }
    }

    private static long Hits(TieredMemoryPoolStatistics statistics) => statistics.Medium.CacheHits + statistics.Large.CacheHits;

    private static long Rents(TieredMemoryPoolStatistics statistics) => statistics.Medium.Rents + statistics.Large.Rents;

    private static long CachedBytes(TieredMemoryPoolStatistics statistics, int size) =>
        statistics.SizeHistogram.Where(row => row.ClassSize == size).Sum(row => row.Cached * row.ClassSize);

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
