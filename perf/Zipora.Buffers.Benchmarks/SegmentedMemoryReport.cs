using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Threading;
using Microsoft.IO;
using Nerdbank.Streams;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// What a 1 GB burst of messages (1,024 of 1 MB alive at once, written in 64 KB chunks) leaves resident, per peer, each
/// in a process of its own, above the process warmed up by one such message (the cold process, before any, is shown
/// too): at the peak, then after the messages are let go of, at one, one and a quarter, one and a
/// half and two idle delays (2 s here, the tiered pool's <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/> in this
/// report; the pool ticks every quarter delay and gives back what has been idle a whole delay), and after a full,
/// compacting collection. A second table measures a second burst, above the process after a first one (let go of,
/// given back, collected): a server's state once it has served a burst, with the code and runtime pages a first burst
/// brings in for good already in its baseline. <c>--segmented-memory</c> prints the tables; it starts itself with
/// <c>--segmented-memory-child</c>.
/// </summary>
public static class SegmentedMemoryReport
{
    private const int Messages = 1024;
    private const int ChunksPerMessage = 16;
    private static readonly TimeSpan s_idleDelay = TimeSpan.FromSeconds(2);
    private static readonly string[] s_peers = ["SegmentedMemoryStream", "RecyclableMemoryStream", "MemoryStream", "Sequence<byte>", "ArrayBufferWriter<byte>"];

    public static void Run()
    {
        Console.WriteLine($"1 GB of messages alive at once, then let go of; resident memory above the process's baseline; {DateTime.UtcNow:yyyy-MM-dd}, {Environment.ProcessorCount} cores");
        Console.WriteLine("| peer | cold baseline | warm baseline | peak | 1 delay later | 1.25 delays | 1.5 delays | 2 delays | then a full collection |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (string peer in s_peers)
        {
            Console.WriteLine($"| {peer} | {MeasureInChild(peer, afterABurst: false)} |");
        }

        Console.WriteLine();
        Console.WriteLine("A second burst, above the process after a first one:");
        Console.WriteLine("| peer | cold baseline | baseline after a burst | peak | 1 delay later | 1.25 delays | 1.5 delays | 2 delays | then a full collection |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (string peer in s_peers)
        {
            Console.WriteLine($"| {peer} | {MeasureInChild(peer, afterABurst: true)} |");
        }
    }

    /// <summary>The child: one peer, after one message or (<paramref name="afterABurst"/>) a whole burst; prints its row's cells.</summary>
    public static void RunChild(string peer, bool afterABurst)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = s_idleDelay });
        var recyclable = new RecyclableMemoryStreamManager();
        byte[] chunk = new byte[64 * 1024];
        new Random(42).NextBytes(chunk);
        Func<IDisposable> create = peer switch
        {
            "SegmentedMemoryStream" => () => new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool }),
            "RecyclableMemoryStream" => () => recyclable.GetStream(),
            "MemoryStream" => () => new MemoryStream(),
            "Sequence<byte>" => () => new Sequence<byte>(ArrayPool<byte>.Shared),
            "ArrayBufferWriter<byte>" => () => new DisposableArrayBufferWriter(),
            _ => throw new ArgumentException($"Unknown peer '{peer}'; expected one of {string.Join(", ", s_peers)}.", nameof(peer)),
        };

        // The cold baseline: the process before any message; the warm one: after one message of the burst's kind was
        // written, let go of, and (for the tiered pool) given back, so the code and runtime state every message path
        // brings in once are in it, as in any process that has served a request.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long coldBaseline = ReportProcess.ResidentBytes();
        IDisposable warmUp = create();
        for (int i = 0; i < ChunksPerMessage; i++)
        {
            Write(warmUp, chunk);
        }

        warmUp.Dispose();
        if (afterABurst)
        {
            Burst(create, chunk);
        }

        Thread.Sleep(s_idleDelay * 1.5);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long baseline = ReportProcess.ResidentBytes();
        long peak = Burst(create, chunk);
        var released = Stopwatch.StartNew();
        var cells = new List<string> { Megabytes(coldBaseline), Megabytes(baseline), "+" + Megabytes(peak - baseline) };
        foreach (double delays in new[] { 1.0, 1.25, 1.5, 2.0 })
        {
            TimeSpan wait = (s_idleDelay * delays) - released.Elapsed;
            Thread.Sleep(wait > TimeSpan.Zero ? wait : TimeSpan.Zero);
            cells.Add("+" + Megabytes(ReportProcess.ResidentBytes() - baseline));
        }

        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        cells.Add("+" + Megabytes(ReportProcess.ResidentBytes() - baseline));
        Console.WriteLine(string.Join(" | ", cells));
    }

    /// <summary>Writes the burst's messages, all alive at once, then lets them go; returns the resident memory at the peak.</summary>
    private static long Burst(Func<IDisposable> create, byte[] chunk)
    {
        var messages = new List<IDisposable>(Messages);
        for (int message = 0; message < Messages; message++)
        {
            IDisposable buffer = create();
            for (int i = 0; i < ChunksPerMessage; i++)
            {
                Write(buffer, chunk);
            }

            messages.Add(buffer);
        }

        long peak = ReportProcess.ResidentBytes();
        messages.ForEach(static buffer => buffer.Dispose());
        return peak;
    }

    private static void Write(IDisposable buffer, byte[] chunk)
    {
        switch (buffer)
        {
            case Stream stream:
                stream.Write(chunk);
                break;
            case IBufferWriter<byte> writer:
                writer.Write(chunk);
                break;
            default:
                throw new InvalidOperationException($"{buffer.GetType().Name} is neither a stream nor a buffer writer.");
        }
    }

    private static string MeasureInChild(string peer, bool afterABurst) => afterABurst
        ? ReportProcess.RunSelf(7, "--segmented-memory-child", peer, "--after-a-burst")
        : ReportProcess.RunSelf(7, "--segmented-memory-child", peer);

    private static string Megabytes(long bytes) => (bytes / (1024.0 * 1024)).ToString("F0", CultureInfo.InvariantCulture) + " MB";

    /// <summary>An <see cref="ArrayBufferWriter{T}"/> dropped as its users drop it: nothing to give back but the array.</summary>
    private sealed class DisposableArrayBufferWriter : IBufferWriter<byte>, IDisposable
    {
        private ArrayBufferWriter<byte>? _writer = new();

        public void Advance(int count) => _writer!.Advance(count);

        public Memory<byte> GetMemory(int sizeHint = 0) => _writer!.GetMemory(sizeHint);

        public Span<byte> GetSpan(int sizeHint = 0) => _writer!.GetSpan(sizeHint);

        public void Dispose() => _writer = null;
    }
}
