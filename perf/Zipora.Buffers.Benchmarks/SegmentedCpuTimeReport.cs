using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// <see cref="SegmentedBufferBenchmarks"/>' message (1 KB by default, written in one chunk, read back, let go of)
/// timed in the thread's CPU time, the peers and the floors interleaved in one process: rounds of 50 MB of
/// messages, each case once per round, the best round of each reported. On this shared VM BenchmarkDotNet's wall-clock errors at
/// 1 KB reach 10-30%, more than the differences measured here; a case's best round in CPU time moves by a few percent.
/// </summary>
public static class SegmentedCpuTimeReport
{
    // About 10 ms of work per case and round at 1 KB; larger messages take fewer.
    private const long BytesPerRound = 50_000L * 1024;
    private const int WarmupRounds = 5;
    private const int Rounds = 80;
    private const int ApartProcesses = 3;

    // The first cases of the message's table are the peers, the fastest of which the ratios are to.
    private const int Peers = 5;

    /// <summary>Prints the table for messages of <paramref name="size"/> bytes written in chunks of <paramref name="chunk"/> (1 KB in 4 KB: one chunk).</summary>
    public static void Run(int size = 1024, int chunk = 4096) => RunInterleaved(Cases(size, chunk, out Action cleanup), cleanup, size, chunk, Peers);

    /// <summary>
    /// As <see cref="Run"/> for <see cref="SegmentedReuseBenchmarks"/>: every buffer kept across messages, emptied its
    /// own way before each (chunks of up to 4 KB).
    /// </summary>
    public static void RunReused(int size = 1024)
    {
        var reused = new SegmentedReuseBenchmarks { Size = size };
        reused.Setup();
        (string Name, Func<long> Message)[] cases =
        [
            ("MemoryStream, `SetLength(0)`", reused.MemoryStream),
            ("`ArrayBufferWriter<byte>`, `ResetWrittenCount`", reused.ArrayBufferWriter),
            ("`Sequence<byte>`, `Reset`", reused.NerdbankSequence),
            ("RecyclableMemoryStream, `SetLength(0)`", reused.RecyclableMemoryStream),
            ("**SegmentedMemoryStream**, `SetLength(0)`", reused.SegmentedMemoryStream),
            ("**SegmentedBufferWriter**, `Reset`", reused.SegmentedBufferWriter),
        ];
        RunInterleaved(cases, reused.Cleanup, size, Math.Min(size, 4096), peers: 4);
    }

    private static void RunInterleaved((string Name, Func<long> Message)[] cases, Action cleanup, int size, int chunk, int peers)
    {
        int messages = MessagesPerRound(size);
        double[] best = [.. cases.Select(static _ => double.MaxValue)];
        for (int round = 0; round < Rounds; round++)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                double ns = TimeRound(cases[i].Message, messages);
                best[i] = round < WarmupRounds ? best[i] : Math.Min(best[i], ns);
            }
        }

        cleanup();
        PrintTable(size, chunk, [.. cases.Select(static c => c.Name)], best, "best round, thread CPU time", peers);
    }

    /// <summary>
    /// As <see cref="Run"/>, each case in processes of its own (as BenchmarkDotNet runs them), alternating, three each:
    /// what one case compiles and caches is then not shaped by the others. Prints each case's median of its processes.
    /// </summary>
    public static void RunApart(int size = 1024, int chunk = 4096)
    {
        string[] names = [.. Cases(size, chunk, out Action cleanup).Select(static c => c.Name)];
        cleanup();
        var runs = names.Select(static _ => new List<double>()).ToArray();
        for (int process = 0; process < ApartProcesses; process++)
        {
            for (int i = 0; i < names.Length; i++)
            {
                string line = ReportProcess.RunSelf(1, "--segmented-cpu-child", i.ToString(CultureInfo.InvariantCulture), size.ToString(CultureInfo.InvariantCulture), chunk.ToString(CultureInfo.InvariantCulture));
                if (double.TryParse(line, NumberStyles.Float, CultureInfo.InvariantCulture, out double ns))
                {
                    runs[i].Add(ns);
                }
            }
        }

        double[] median = [.. runs.Select(static values => values.Count == 0 ? double.NaN : values.Order().ElementAt(values.Count / 2))];
        PrintTable(size, chunk, names, median, $"median of {ApartProcesses} processes, each its best round", Peers);
    }

    /// <summary>The child of <see cref="RunApart"/>: case <paramref name="caseIndex"/> alone, its best round printed in ns.</summary>
    public static void RunChild(int caseIndex, int size, int chunk)
    {
        Func<long> message = Cases(size, chunk, out Action cleanup)[caseIndex].Message;
        int messages = MessagesPerRound(size);
        double best = double.MaxValue;
        for (int round = 0; round < Rounds; round++)
        {
            double ns = TimeRound(message, messages);
            best = round < WarmupRounds ? best : Math.Min(best, ns);
        }

        cleanup();
        Console.WriteLine(best.ToString("F1", CultureInfo.InvariantCulture));
    }

    private static (string Name, Func<long> Message)[] Cases(int size, int chunk, out Action cleanup)
    {
        var buffers = new SegmentedBufferBenchmarks { Size = size, Chunk = chunk };
        var floor = new SegmentedFloorBenchmarks { Size = size, Chunk = chunk };
        buffers.Setup();
        floor.Setup();
        cleanup = () =>
        {
            buffers.Cleanup();
            floor.Cleanup();
        };
        return
        [
            ("MemoryStream", buffers.MemoryStream),
            ("`ArrayBufferWriter<byte>`", buffers.ArrayBufferWriter),
            ("`Sequence<byte>`", buffers.NerdbankSequence),
            ("RecyclableMemoryStream", buffers.RecyclableMemoryStream),
            ("`Pipe`", buffers.Pipe),
            ("**SegmentedMemoryStream**", buffers.SegmentedMemoryStream),
            ("**SegmentedBufferWriter**", buffers.SegmentedBufferWriter),
            ("floor: copies + object + a guard per call", floor.CopiesAnObjectAndAGuardPerCall),
            ("floor: copies + object + a guard per call + a pooled block", floor.CopiesAnObjectAGuardPerCallAndAPooledBlock),
            ("writers' floor: copies + object + sequence read back", floor.CopiesAnObjectAndASequenceReadBack),
            ("writers' floor: + a guard per advance and dispose + a pooled block", floor.CopiesAnObjectTwoGuardsAPooledBlockAndASequenceReadBack),
        ];
    }

    private static int MessagesPerRound(int size) => (int)Math.Max(1, BytesPerRound / size);

    /// <summary>One round of <paramref name="messages"/> messages, in ns of thread CPU time per message.</summary>
    private static double TimeRound(Func<long> message, int messages)
    {
        long start = SteadyCpuTimeReport.ThreadCpuNanoseconds();
        long checksum = 0;
        for (int m = 0; m < messages; m++)
        {
            checksum += message();
        }

        double ns = (SteadyCpuTimeReport.ThreadCpuNanoseconds() - start) / (double)messages;
        GC.KeepAlive(checksum);
        return ns;
    }

    private static void PrintTable(int size, int chunk, string[] names, double[] ns, string what, int peers)
    {
        double fastestPeer = ns[..peers].Min();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size} B message, {chunk} B chunks | ns ({what}) | × the fastest peer |"));
        Console.WriteLine("|---|---|---|");
        for (int i = 0; i < names.Length; i++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {names[i]} | {ns[i]:F1} | {ns[i] / fastestPeer:F2} |"));
        }
    }
}
