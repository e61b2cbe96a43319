using System;
using System.Globalization;
using System.Linq;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// <see cref="SegmentedBufferBenchmarks"/>' 1 KB message (written in one chunk, read back, let go of) timed in the
/// thread's CPU time, the peers and the writer's floor interleaved in one process: rounds of 50,000 messages, each
/// case once per round, the best round of each reported. On this shared VM BenchmarkDotNet's wall-clock errors at
/// 1 KB reach 10-30%, more than the differences measured here; a case's best round in CPU time moves by a few percent.
/// </summary>
public static class SegmentedCpuTimeReport
{
    private const int Messages = 50_000;
    private const int WarmupRounds = 5;
    private const int Rounds = 80;

    public static void Run()
    {
        var buffers = new SegmentedBufferBenchmarks { Size = 1024, Chunk = 4096 };
        var floor = new SegmentedFloorBenchmarks { Size = 1024, Chunk = 4096 };
        buffers.Setup();
        floor.Setup();
        (string Name, Func<long> Message)[] cases =
        [
            ("MemoryStream", buffers.MemoryStream),
            ("`ArrayBufferWriter<byte>`", buffers.ArrayBufferWriter),
            ("`Sequence<byte>`", buffers.NerdbankSequence),
            ("**SegmentedMemoryStream**", buffers.SegmentedMemoryStream),
            ("**SegmentedBufferWriter**", buffers.SegmentedBufferWriter),
            ("floor: copies + object + the writer's interlocked instructions", floor.CopiesAnObjectAndTheWritersInterlockedInstructions),
        ];

        double[] best = [.. cases.Select(static _ => double.MaxValue)];
        for (int round = 0; round < Rounds; round++)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                Func<long> message = cases[i].Message;
                long start = SteadyCpuTimeReport.ThreadCpuNanoseconds();
                long checksum = 0;
                for (int m = 0; m < Messages; m++)
                {
                    checksum += message();
                }

                double ns = (SteadyCpuTimeReport.ThreadCpuNanoseconds() - start) / (double)Messages;
                GC.KeepAlive(checksum);
                best[i] = round < WarmupRounds ? best[i] : Math.Min(best[i], ns);
            }
        }

        buffers.Cleanup();
        // RecyclableMemoryStream and Pipe are left out: at 1 KB they take 2-6 times as long as these three (section 10).
        double fastestPeer = Math.Min(best[0], Math.Min(best[1], best[2]));
        Console.WriteLine("| 1 KB message | ns (best round, thread CPU time) | × the fastest peer |");
        Console.WriteLine("|---|---|---|");
        for (int i = 0; i < cases.Length; i++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {cases[i].Name} | {best[i]:F1} | {best[i] / fastestPeer:F2} |"));
        }
    }
}
