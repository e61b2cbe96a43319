using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A metrics listener collecting while pools are made, rented from in every tier, trimmed and disposed on other
/// threads (buffers still out returned after the dispose): a collection must never throw into the listener, and a
/// pool whose dispose has returned must not be reported by any collection begun after it.
/// </summary>
public sealed class CollectionRacingDisposeTests
{
    private const int LeastOfEach = 10;
    private static readonly int[] s_sizes = [64, 4_000, 100_000, 3 * 1024 * 1024];
    private static readonly TimeSpan s_leastRun = TimeSpan.FromMilliseconds(1500);
    private static readonly TimeSpan s_longestRun = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task CollectionsRacingDisposeAndTrimNeverThrowAndNeverReportAPoolDisposedBeforeThem()
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        string prefix = $"race-{Guid.NewGuid():N}-";
        var disposedBefore = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var reportedLate = new ConcurrentQueue<string>();
        long collectionStart = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == PoolMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) =>
        {
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == PoolMetrics.OwnerTag && tag.Value is string owner && disposedBefore.TryGetValue(owner, out long disposedAt) && disposedAt < Volatile.Read(ref collectionStart))
                {
                    reportedLate.Enqueue($"{instrument.Name} {owner}");
                }
            }
        });
        listener.Start();

        var clock = Stopwatch.StartNew();
        int collections = 0;
        int made = 0;

        // Run for a while, and on a loaded machine (the suite's parallel tests, CI) on until enough of both overlapped:
        // a fixed 1.5 s saw 2 collections beside 1,887 pools once, the collecting task started late and each collection
        // walked every live pool of the process.
        bool Enough() => clock.Elapsed > s_leastRun
            && ((Volatile.Read(ref collections) > LeastOfEach && Volatile.Read(ref made) > LeastOfEach) || clock.Elapsed > s_longestRun);
        Task collecting = Task.Factory.StartNew(
            () =>
            {
                while (!Enough())
                {
                    Volatile.Write(ref collectionStart, clock.ElapsedTicks);
                    listener.RecordObservableInstruments();
                    Interlocked.Increment(ref collections);
                }
            },
            token,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        void Churn(int id)
        {
            while (!Enough())
            {
                string name = $"{prefix}{id}-{Interlocked.Increment(ref made)}";
                var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name, IdleReleaseDelay = TimeSpan.FromMilliseconds(50) });
                var rented = new List<IMemoryOwner<byte>>();
                foreach (int size in s_sizes)
                {
                    rented.Add(pool.Rent(size));
                    pool.Rent(size).Dispose();
                }

                pool.Trim();
                pool.Dispose();
                disposedBefore[pool.Name] = clock.ElapsedTicks;

                // Kestrel's buffers in flight at shutdown come back after the pool's dispose.
                rented.ForEach(static owner => owner.Dispose());
            }
        }

        Task[] churning = new Task[2];
        for (int worker = 0; worker < churning.Length; worker++)
        {
            int id = worker;
            churning[worker] = Task.Factory.StartNew(() => Churn(id), token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        await Task.WhenAll([collecting, .. churning]);
        TestContext.Current.SendDiagnosticMessage($"{collections} collections over {made} pools made and disposed");
        Assert.True(collections > LeastOfEach && made > LeastOfEach, $"too little overlap in {clock.Elapsed.TotalSeconds:F1} s: {collections} collections, {made} pools");
        Assert.Empty(reportedLate);
    }
}
