using System;
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

    /// <summary>Prints the table for messages of <paramref name="size"/> bytes written in chunks of <paramref name="chunk"/> (1 KB in 4 KB: one chunk).</summary>
    public static void Run(int size = 1024, int chunk = 4096)
    {
        var buffers = new SegmentedBufferBenchmarks { Size = size, Chunk = chunk };
        var floor = new SegmentedFloorBenchmarks { Size = size, Chunk = chunk };
        buffers.Setup();
        floor.Setup();
        (string Name, Func<long> Message)[] cases =
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
        ];

        int messages = (int)Math.Max(1, BytesPerRound / size);
        double[] best = [.. cases.Select(static _ => double.MaxValue)];
        for (int round = 0; round < Rounds; round++)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                Func<long> message = cases[i].Message;
                long start = SteadyCpuTimeReport.ThreadCpuNanoseconds();
                long checksum = 0;
                for (int m = 0; m < messages; m++)
                {
                    checksum += message();
                }

                double ns = (SteadyCpuTimeReport.ThreadCpuNanoseconds() - start) / (double)messages;
                GC.KeepAlive(checksum);
                best[i] = round < WarmupRounds ? best[i] : Math.Min(best[i], ns);
            }
        }

        buffers.Cleanup();
        const int Peers = 5;
        double fastestPeer = best[..Peers].Min();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size} B message, {chunk} B chunks | ns (best round, thread CPU time) | × the fastest peer |"));
        Console.WriteLine("|---|---|---|");
        for (int i = 0; i < cases.Length; i++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {cases[i].Name} | {best[i]:F1} | {best[i] / fastestPeer:F2} |"));
        }
    }
}
