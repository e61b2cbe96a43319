using System;
using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Threading;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// How long a trim of a large cache keeps other threads waiting for its slab heap's lock: a pool caches a burst of
/// blocks, then one thread trims it while another reads the pool's statistics every millisecond and times each read. A
/// statistics read takes the heap's lock (so the figures are exact during a trim) as a rent that must carve a block of
/// any of the tier's classes does, so its longest read is how long such a rent could wait. A case per process
/// (`--trim-stall-child`), five each.
/// </summary>
public static class TrimStallReport
{
    private const int Runs = 5;

    private static readonly (int Blocks, int Size)[] s_cases =
    [
        (100_000, 64),
        (1_000_000, 64),
        (100_000, 4096),
    ];

    public static void Run()
    {
        Console.WriteLine("| cached blocks | trim, ms | longest statistics read during it, ms |");
        Console.WriteLine("|---|---|---|");
        foreach ((int blocks, int size) in s_cases)
        {
            string trims = string.Empty;
            string reads = string.Empty;
            for (int run = 0; run < Runs; run++)
            {
                string[] cells = ReportProcess.RunSelf(2, "--trim-stall-child", Invariant(blocks), Invariant(size)).Split(" | ");
                trims += (run == 0 ? string.Empty : ", ") + cells[0];
                reads += (run == 0 ? string.Empty : ", ") + cells[^1];
            }

            Console.WriteLine($"| {Invariant(blocks)} × {Invariant(size)} B | {trims} | {reads} |");
        }
    }

    public static void RunChild(int blocks, int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            MaxRetainedBytes = long.MaxValue / 4,
            ReuseOwners = true,
            IdleReleaseDelay = TimeSpan.FromMinutes(10),
        });
        var cached = new IMemoryOwner<byte>[blocks];
        for (int i = 0; i < blocks; i++)
        {
            cached[i] = pool.Rent(size);
            cached[i].Memory.Span[0] = 1;
        }

        foreach (IMemoryOwner<byte> owner in cached)
        {
            owner.Dispose();
        }

        long longest = 0;
        bool measuring = false;
        bool stop = false;
        var reader = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                long before = Stopwatch.GetTimestamp();
                _ = pool.GetStatistics();
                long took = Stopwatch.GetTimestamp() - before;
                if (Volatile.Read(ref measuring) && took > longest)
                {
                    longest = took;
                }

                // A read a millisecond (a metrics listener's are far rarer): spinning, it took one of the two cores.
                Thread.Sleep(1);
            }
        });
        reader.Start();
        Thread.Sleep(50);

        Volatile.Write(ref measuring, true);
        long trimStart = Stopwatch.GetTimestamp();
        pool.Trim();
        TimeSpan trim = Stopwatch.GetElapsedTime(trimStart);
        Volatile.Write(ref measuring, false);
        Volatile.Write(ref stop, true);
        reader.Join();
        Console.WriteLine($"{trim.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture)} | {(longest * 1000.0 / Stopwatch.Frequency).ToString("F2", CultureInfo.InvariantCulture)}");
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}
