using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The meter's counters are observable counters, which must never fall: exporters read a fall as a reset of the
/// series and a rate over it jumps by the whole count. The statistics are summed from per-thread counts while the threads
/// run, so a read can be one or two below the last while buffers move between threads (a region tier's slot counts a
/// park, then uncounts the region it displaced); the meter must not pass that on.
/// </summary>
public sealed class MonotonicCounterTests
{
    [Theory]
    [InlineData(64, 700)]
    [InlineData(4096, 8192)]
    [InlineData(100_000, 300_000)]
    [InlineData(3 << 20, 5 << 20)]
    public void TheMetersCountersNeverFallWhileBuffersMoveBetweenThreads(int size, int otherSize)
    {
        string owner = $"monotonic-{Guid.NewGuid():N}";
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = owner });
        var last = new Dictionary<string, long>();
        var falls = new List<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, meterListener) =>
        {
            if (instrument.Meter.Name == PoolMetrics.MeterName && instrument.GetType().Name.StartsWith("ObservableCounter", StringComparison.Ordinal))
            {
                meterListener.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            KeyValuePair<string, object?>[] all = tags.ToArray();
            if (!all.Any(tag => Equals(tag.Value, owner)))
            {
                return;
            }

            string series = $"{instrument.Name} {string.Join(",", all.Select(static tag => $"{tag.Key}={tag.Value}"))}";
            if (last.TryGetValue(series, out long before) && value < before)
            {
                falls.Add($"{series}: {before} -> {value}");
            }

            last[series] = value;
        });
        listener.Start();

        using (var stop = new CancellationTokenSource())
        {
            var handOff = new ConcurrentQueue<IMemoryOwner<byte>>();
            Thread[] threads = [.. Enumerable.Range(1, 2).Select(seed => new Thread(() => MoveBuffersBetweenThreads(pool, [size, otherSize], handOff, seed, stop.Token)))];
            Array.ForEach(threads, static thread => thread.Start());
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(2) && falls.Count == 0)
            {
                listener.RecordObservableInstruments();
            }

            stop.Cancel();
            Array.ForEach(threads, static thread => thread.Join());
            while (handOff.TryDequeue(out IMemoryOwner<byte>? left))
            {
                left.Dispose();
            }
        }

        Assert.True(falls.Count == 0, $"while buffers of {size} and {otherSize} bytes moved between threads, counters fell: {string.Join("; ", falls.Take(5))}");
    }

    /// <summary>Rents buffers of <paramref name="sizes"/> and returns them on this thread, on the other, or later.</summary>
    private static void MoveBuffersBetweenThreads(TieredMemoryPool pool, int[] sizes, ConcurrentQueue<IMemoryOwner<byte>> handOff, int seed, CancellationToken stop)
    {
        var random = new Random(seed);
        var kept = new Queue<IMemoryOwner<byte>>();
        while (!stop.IsCancellationRequested)
        {
            IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
            owner.Memory.Span[0] = 1;
            switch (random.Next(3))
            {
                case 0:
                    handOff.Enqueue(owner);
                    break;
                case 1:
                    kept.Enqueue(owner);
                    break;
                default:
                    owner.Dispose();
                    break;
            }

            if (kept.Count > 2)
            {
                kept.Dequeue().Dispose();
            }

            while (handOff.Count > 4 && handOff.TryDequeue(out IMemoryOwner<byte>? other))
            {
                other.Dispose();
            }
        }

        while (kept.TryDequeue(out IMemoryOwner<byte>? left))
        {
            left.Dispose();
        }
    }
}
