using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics.Metrics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The plugin <c>CollectibleContextUnloadTests</c> runs in a collectible <see cref="PluginContext"/>: it uses every
/// part of the library a plugin may touch (the shared pools, a pool of its own with an idle delay, rents and returns
/// on a thread of its own and on thread-pool threads that outlive the plugin, a segmented writer and stream with an
/// asynchronous copy, statistics, advice, a meter listener and an event listener, a leaked owner), then drops it all.
/// </summary>
/// <remarks>Called by reflection in the plugin's context, so every type it names is that context's copy.</remarks>
public static class UnloadablePlugin
{
    /// <summary>The uses, by name; <c>all</c> for every one (the test), a few to find which one holds the context.</summary>
    public static readonly string[] Uses = ["shared", "pool", "threads", "threadpool", "writer", "arrays", "statistics", "meter", "events", "leak"];

    /// <summary>
    /// Runs the <paramref name="uses"/> (comma-separated names of <see cref="Uses"/>, or <c>all</c>); returns the
    /// regions and huge buffers it rented, as start and length pairs, for the host to see them unmapped later.
    /// </summary>
    public static long[] Run(string uses)
    {
        HashSet<string> chosen = uses == "all" ? [.. Uses] : [.. uses.Split(',')];
        var blocks = new List<long>();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "plugin", IdleReleaseDelay = TimeSpan.FromMilliseconds(200) });
        if (chosen.Contains("shared"))
        {
            RentEachTier(TieredMemoryPool.Shared, blocks);
        }

        if (chosen.Contains("pool"))
        {
            RentEachTier(pool, blocks);
        }

        if (chosen.Contains("threads"))
        {
            var thread = new Thread(() =>
            {
                RentEachTier(TieredMemoryPool.Shared, null);
                RentEachTier(pool, null);
            });
            thread.Start();
            thread.Join();
        }

        if (chosen.Contains("threadpool"))
        {
            // More work items than workers, so several thread-pool threads (which outlive the plugin) make caches.
            Parallel.For(0, 4 * Environment.ProcessorCount, _ =>
            {
                RentEachTier(TieredMemoryPool.Shared, null);
                RentEachTier(pool, null);
                TieredArrayPool.Shared.Return(TieredArrayPool.Shared.Rent(20_000));
            });
        }

        if (chosen.Contains("writer"))
        {
            Write(new SegmentedBufferOptions());
            Write(new SegmentedBufferOptions { Pool = pool });
        }

        if (chosen.Contains("arrays"))
        {
            TieredArrayPool.Shared.Return(TieredArrayPool.Shared.Rent(100));
            TieredArrayPool.Shared.Return(TieredArrayPool.Shared.Rent(40_000));
            var arrays = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.FromMilliseconds(200) });
            arrays.Return(arrays.Rent(5000));
        }

        if (chosen.Contains("statistics"))
        {
            _ = TieredMemoryPool.Shared.GetStatistics().ToString();
            _ = pool.GetStatistics().ToString();
            _ = TieredMemoryPool.Shared.GetAdvice();
            _ = TieredArrayPool.Shared.GetStatistics().ToString();
        }

        if (chosen.Contains("meter"))
        {
            ReadTheMeter();
        }

        if (chosen.Contains("events"))
        {
            using var events = new PoolEventRecorder();
            using IMemoryOwner<byte> owner = TieredMemoryPool.Shared.Rent(100);
        }

        if (chosen.Contains("leak"))
        {
            // Rented and never disposed: the pool's finalizers reclaim it.
            _ = TieredMemoryPool.Shared.Rent(4096);
            _ = pool.Rent(20_000);
        }

        return [.. blocks];
    }

    private static unsafe void RentEachTier(TieredMemoryPool pool, List<long>? blocks)
    {
        foreach (int size in (int[])[100, 4096, 20_000, 3 * 1024 * 1024])
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(1);
            if (blocks is not null && size >= 20_000)
            {
                using System.Buffers.MemoryHandle handle = owner.Memory.Pin();
                blocks.Add((long)handle.Pointer);
                blocks.Add(owner.Memory.Length);
            }
        }
    }

    private static void Write(SegmentedBufferOptions options)
    {
        using (var writer = new SegmentedBufferWriter(options))
        {
            for (int i = 0; i < 40; i++)
            {
                writer.GetSpan(10_000)[..10_000].Fill((byte)i);
                writer.Advance(10_000);
            }

            writer.CopyToAsync(Stream.Null).AsTask().Wait();
        }

        using var stream = new SegmentedMemoryStream(options);
        stream.Write(new byte[300_000]);
        stream.Position = 0;
        stream.CopyToAsync(Stream.Null).Wait();
    }

    private static void ReadTheMeter()
    {
        long measured = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Zipora.Buffers")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => measured += value);
        listener.Start();
        listener.RecordObservableInstruments();
        _ = measured;
    }
}
