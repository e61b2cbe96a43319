using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Many pipes at once, per pool, each pool in a process of its own so resident memory is its alone: time per run
/// (256 MB over the pipes), allocations, collections, and resident memory above the process's baseline at its peak
/// and after the runs. <c>--many-pipes</c> prints the table; it starts itself with <c>--many-pipes-child</c>.
/// </summary>
public static class ManyPipesReport
{
    private const long BytesPerRun = 256L << 20;
    private const int Runs = 7;
    private static readonly string[] s_pools = ["default", "tiered", "tiered-reuse-owners", "kestrel"];
    private static readonly int[] s_pipeCounts = [64, 256, 1024];

    public static void Run()
    {
        Console.WriteLine($"256 MB per run through N pipes at once, {Runs} runs after one warm-up, a process per pool; {DateTime.UtcNow:yyyy-MM-dd}, {Environment.ProcessorCount} cores");
        Console.WriteLine("| pipes | pool | median ms per run | MB/s | allocated per run | gen0 / gen1 / gen2 per run | resident above baseline: peak / after |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (int pipes in s_pipeCounts)
        {
            foreach (string pool in s_pools)
            {
                Console.WriteLine($"| {pipes} | {pool} | {MeasureInChild(pool, pipes)} |");
            }
        }
    }

    /// <summary>The child: one pool, one pipe count; prints its row's cells.</summary>
    public static void RunChild(string poolName, int pipes)
    {
        MemoryPool<byte> pool = poolName switch
        {
            "default" => MemoryPool<byte>.Shared,
            "tiered" => Peers.CreateTieredPool(),
            "tiered-reuse-owners" => Peers.CreateTieredPoolReusingOwners(),
            "kestrel" => Peers.CreateKestrelPool(),
            _ => throw new ArgumentException($"Unknown pool '{poolName}'; expected one of {string.Join(", ", s_pools)}.", nameof(poolName)),
        };

        GC.Collect();
        long baseline = ReportProcess.ResidentBytes();
        PipeTraffic.MoveAsync(pool, pipes, BytesPerRun / pipes).GetAwaiter().GetResult();

        int[] collectionsBefore = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var milliseconds = new List<double>();
        for (int run = 0; run < Runs; run++)
        {
            long started = Stopwatch.GetTimestamp();
            PipeTraffic.MoveAsync(pool, pipes, BytesPerRun / pipes).GetAwaiter().GetResult();
            milliseconds.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        double allocatedPerRun = (double)(GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / Runs;
        string collections = string.Join(" / ", Enumerable.Range(0, 3).Select(generation => Format($"{(double)(GC.CollectionCount(generation) - collectionsBefore[generation]) / Runs:F1}")));
        double median = milliseconds.Order().ElementAt(Runs / 2);
        long peak = ReportProcess.PeakResidentBytes() - baseline;
        long after = ReportProcess.ResidentBytes() - baseline;
        Console.WriteLine(Format($"{median:F1} | {BytesPerRun / (1024.0 * 1024) / (median / 1000):F0} | {Megabytes(allocatedPerRun)} | {collections} | {Megabytes(peak)} / {Megabytes(after)}"));
    }

    private static string MeasureInChild(string pool, int pipes) =>
        ReportProcess.RunSelf(5, "--many-pipes-child", pool, pipes.ToString(CultureInfo.InvariantCulture));

    private static string Megabytes(double bytes) => Format($"{bytes / (1024 * 1024):F1} MB");

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
