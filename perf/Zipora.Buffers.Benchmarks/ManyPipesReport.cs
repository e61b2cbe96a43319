using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
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
        long baseline = ResidentBytes();
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
        long peak = PeakResidentBytes() - baseline;
        long after = ResidentBytes() - baseline;
        Console.WriteLine(Format($"{median:F1} | {BytesPerRun / (1024.0 * 1024) / (median / 1000):F0} | {Megabytes(allocatedPerRun)} | {collections} | {Megabytes(peak)} / {Megabytes(after)}"));
    }

    private static string MeasureInChild(string pool, int pipes)
    {
        string self = typeof(ManyPipesReport).Assembly.Location;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string argument in new[] { self, "--many-pipes-child", pool, pipes.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(argument);
        }

        using Process child = Process.Start(start) ?? throw new InvalidOperationException("dotnet could not be started");
        string output = child.StandardOutput.ReadToEnd().Trim();
        child.WaitForExit();
        return child.ExitCode == 0 ? output.Split('\n')[^1] : $"failed (exit {child.ExitCode}) | | | | ";
    }

    private static long ResidentBytes() => StatusField("VmRSS:");

    private static long PeakResidentBytes() => StatusField("VmHWM:");

    /// <summary>A field of /proc/self/status, in bytes (the kernel writes kB); 0 where there is no /proc.</summary>
    private static long StatusField(string name)
    {
        if (!File.Exists("/proc/self/status"))
        {
            return 0;
        }

        string line = File.ReadLines("/proc/self/status").First(line => line.StartsWith(name, StringComparison.Ordinal));
        return long.Parse(line[name.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    private static string Megabytes(double bytes) => Format($"{bytes / (1024 * 1024):F1} MB");

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
