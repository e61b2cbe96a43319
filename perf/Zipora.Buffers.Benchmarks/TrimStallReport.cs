using System;
using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Threading;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// How long a trim of a large cache keeps other threads' rents waiting: a pool caches a burst of blocks, then one
/// thread trims it while another rents blocks of another class without returning them (so its rents keep carving new
/// blocks, each under the slab heap's lock) and times each. A case per process (`--trim-stall-child`), five each.
/// </summary>
public static class TrimStallReport
{
    private const int Runs = 5;

    // The probe's blocks given back in batches this large, so its own cache stays small.
    private const int ProbeBatch = 20_000;

    private static readonly (int Blocks, int Size, int ProbeSize)[] s_cases =
    [
        (100_000, 64, 300),
        (1_000_000, 64, 300),
        (100_000, 4096, 8192),
    ];

    public static void Run()
    {
        Console.WriteLine("| cached blocks | trim, ms | longest rent on another thread during it, ms |");
        Console.WriteLine("|---|---|---|");
        foreach ((int blocks, int size, int probeSize) in s_cases)
        {
            string trims = string.Empty;
            string stalls = string.Empty;
            for (int run = 0; run < Runs; run++)
            {
                string[] cells = ReportProcess.RunSelf(2, "--trim-stall-child", Invariant(blocks), Invariant(size), Invariant(probeSize)).Split(" | ");
                trims += (run == 0 ? string.Empty : ", ") + cells[0];
                stalls += (run == 0 ? string.Empty : ", ") + cells[^1];
            }

            Console.WriteLine($"| {Invariant(blocks)} × {Invariant(size)} B (the probe: {Invariant(probeSize)} B) | {trims} | {stalls} |");
        }
    }

    public static void RunChild(int blocks, int size, int probeSize)
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
        var probeHeld = new IMemoryOwner<byte>[ProbeBatch];
        using var started = new ManualResetEventSlim();
        var probe = new Thread(() =>
        {
            int held = 0;
            started.Set();
            while (!Volatile.Read(ref stop))
            {
                long before = Stopwatch.GetTimestamp();
                probeHeld[held++] = pool.Rent(probeSize);
                long took = Stopwatch.GetTimestamp() - before;
                if (Volatile.Read(ref measuring) && took > longest)
                {
                    longest = took;
                }

                if (held == ProbeBatch)
                {
                    foreach (IMemoryOwner<byte> owner in probeHeld)
                    {
                        owner.Dispose();
                    }

                    held = 0;
                }
            }
        });
        probe.Start();
        started.Wait();
        Thread.Sleep(50);

        Volatile.Write(ref measuring, true);
        long trimStart = Stopwatch.GetTimestamp();
        pool.Trim();
        TimeSpan trim = Stopwatch.GetElapsedTime(trimStart);
        Volatile.Write(ref measuring, false);
        Volatile.Write(ref stop, true);
        probe.Join();
        Console.WriteLine($"{trim.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture)} | {(longest * 1000.0 / Stopwatch.Frequency).ToString("F2", CultureInfo.InvariantCulture)}");
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}
