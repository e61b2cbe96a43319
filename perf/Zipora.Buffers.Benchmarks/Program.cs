using System;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using Zipora.Buffers.Benchmarks;

// `--efficiency` prints the memory-efficiency table; everything else goes to BenchmarkDotNet's switcher
// (e.g. --filter '*Steady*', --job Dry for the smoke run).
if (args.Contains("--efficiency"))
{
    MemoryEfficiencyReport.Run();
    return;
}

// `--many-pipes` prints the many-pipes table (a process per pool, so resident memory is each pool's own).
if (args.Contains("--many-pipes"))
{
    ManyPipesReport.Run();
    return;
}

if (args is ["--many-pipes-child", string pool, string pipes])
{
    ManyPipesReport.RunChild(pool, int.Parse(pipes, System.Globalization.CultureInfo.InvariantCulture));
    return;
}

// `--segmented-memory` prints what a 1 GB burst of messages leaves resident, per peer (a process each).
if (args.Contains("--segmented-memory"))
{
    SegmentedMemoryReport.Run();
    return;
}

if (args is ["--segmented-memory-child", string peer, ..] && args.Length <= 3)
{
    SegmentedMemoryReport.RunChild(peer, afterABurst: args is [_, _, "--after-a-burst"]);
    return;
}

// `--trim-stall` prints how long a trim of a large cache keeps other threads waiting for its heap's lock (a process
// per case).
if (args.Contains("--trim-stall"))
{
    TrimStallReport.Run();
    return;
}

if (args is ["--trim-stall-child", string stallBlocks, string stallSize])
{
    TrimStallReport.RunChild(
        int.Parse(stallBlocks, System.Globalization.CultureInfo.InvariantCulture),
        int.Parse(stallSize, System.Globalization.CultureInfo.InvariantCulture));
    return;
}

// `--steady-cpu` prints the steady rent, write, dispose table in thread CPU time (a process per case), which a busy
// shared machine disturbs far less than BenchmarkDotNet's wall-clock times.
if (args.Contains("--steady-cpu"))
{
    SteadyCpuTimeReport.Run();
    return;
}

// `--segmented-cpu [size chunk]` prints a segmented message (1 KB by default) against its peers and its floor, in
// thread CPU time.
// `--segmented-cpu-apart [size chunk]`: the same cases, each in processes of its own, as BenchmarkDotNet runs them.
if (args is ["--segmented-cpu-apart", string apartSize, string apartChunk])
{
    SegmentedCpuTimeReport.RunApart(int.Parse(apartSize, System.Globalization.CultureInfo.InvariantCulture), int.Parse(apartChunk, System.Globalization.CultureInfo.InvariantCulture));
    return;
}

if (args.Contains("--segmented-cpu-apart"))
{
    SegmentedCpuTimeReport.RunApart();
    return;
}

if (args is ["--segmented-cpu-child", string childCase, string childSize, string childChunk])
{
    SegmentedCpuTimeReport.RunChild(int.Parse(childCase, System.Globalization.CultureInfo.InvariantCulture), int.Parse(childSize, System.Globalization.CultureInfo.InvariantCulture), int.Parse(childChunk, System.Globalization.CultureInfo.InvariantCulture));
    return;
}

// `--segmented-reuse-cpu [size]`: every buffer kept across messages (SegmentedReuseBenchmarks), in thread CPU time.
if (args is ["--segmented-reuse-cpu", string reusedSize])
{
    SegmentedCpuTimeReport.RunReused(int.Parse(reusedSize, System.Globalization.CultureInfo.InvariantCulture));
    return;
}

if (args.Contains("--segmented-reuse-cpu"))
{
    SegmentedCpuTimeReport.RunReused();
    return;
}

if (args is ["--segmented-cpu", string segmentedSize, string segmentedChunk])
{
    SegmentedCpuTimeReport.Run(int.Parse(segmentedSize, System.Globalization.CultureInfo.InvariantCulture), int.Parse(segmentedChunk, System.Globalization.CultureInfo.InvariantCulture));
    return;
}

if (args.Contains("--segmented-cpu"))
{
    SegmentedCpuTimeReport.Run();
    return;
}

if (args is ["--steady-cpu-child", string steadyPool, string steadySize, ..])
{
    SteadyCpuTimeReport.RunChild(steadyPool, int.Parse(steadySize, System.Globalization.CultureInfo.InvariantCulture), untouched: args is [.., "untouched"]);
    return;
}

// `--phase-shift` prints the adaptive-cache table (counts, not times).
if (args.Contains("--phase-shift"))
{
    PhaseShiftReport.Run();
    return;
}

// `--jemalloc` runs the NativeMemory.Alloc cases again in processes started with LD_PRELOAD=libjemalloc.so.2, so malloc
// is jemalloc's: it cannot be loaded with dlopen here ("cannot allocate memory in static TLS block").
if (args.Contains("--jemalloc"))
{
    const string Jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    if (!File.Exists(Jemalloc))
    {
        Console.WriteLine($"// jemalloc skipped: {Jemalloc} is not installed (apt-get install libjemalloc2).");
        return;
    }

    Job job = Job.Default.WithIterationCount(10).WithWarmupCount(3).WithLaunchCount(1)
        .WithEnvironmentVariable(new EnvironmentVariable("LD_PRELOAD", Jemalloc)).WithId("jemalloc");
    string[] rest = [.. args.Where(static arg => arg != "--jemalloc"), "--filter", "*Steady*NativeMemoryAlloc*", "*Burst*NativeMemoryAlloc*"];
    BenchmarkSwitcher.FromAssembly(typeof(Peers).Assembly).Run(rest, DefaultConfig.Instance.AddJob(job));
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Peers).Assembly).Run(args);
