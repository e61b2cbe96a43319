using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A segmented writer or stream built on one thread and disposed, reset or consumed on another that never used one (a
/// Pipe's reader, a continuation on a fresh pool thread) touches the segment cache's and the trackers' thread-statics
/// for the first time there, and the runtime allocates them then. At the GC heap limit that allocation throws: a
/// release that let it out had taken the segment's block away already, and the dispose had marked the buffer released
/// for good, so the blocks after it were lost. Such a release gives every block back, once, and throws nothing.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class SegmentedFirstTouchSafetyTests
{
    private const int RoundsPerCase = 3;

    // Five segments of the default growth (4, 8, 16, 32 and 64 KB).
    private const int MessageLength = 100_000;

    [Fact]
    public void AReleaseThatIsItsThreadsFirstTouchOfTheSegmentsAtTheHeapLimitGivesEveryBlockBack()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(SegmentedFirstTouchSafetyTests), nameof(AReleaseThatIsItsThreadsFirstTouchOfTheSegmentsAtTheHeapLimitGivesEveryBlockBack)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var failures = new List<string>();
        var filler = new List<byte[]>(400_000);
        var cases = new (string Name, Func<SegmentedBufferOptions, IDisposable> Create, Action<IDisposable> AtTheLimit)[]
        {
            ("a writer's dispose", NewWriter, static buffer => buffer.Dispose()),
            ("a writer's reset", NewWriter, static buffer => ((SegmentedBufferWriter)buffer).Reset()),
            ("a writer's consume of all but its last segment", NewWriter, static buffer => ((SegmentedBufferWriter)buffer).Consume(MessageLength - 1)),
            ("a stream's dispose", NewStream, static buffer => buffer.Dispose()),
            ("a stream's SetLength(0)", NewStream, static buffer => ((SegmentedMemoryStream)buffer).SetLength(0)),
        };

        int rounds = 0;
        int thrown = 0;
        foreach (bool reuseOwners in new[] { false, true })
        {
            foreach ((string name, Func<SegmentedBufferOptions, IDisposable> create, Action<IDisposable> atTheLimit) in cases)
            {
                var time = new FakeTimeProvider();
                var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
                var options = new SegmentedBufferOptions { Pool = pool };
                string what = $"{name}, ReuseOwners {reuseOwners}";

                // The path compiled on another fresh thread first, with room, so only the heap limit differs.
                IDisposable warmUp = create(options);
                Assert.True(HeapFiller.ThrownOnAFreshThread(withRoom: null, () => atTheLimit(warmUp), filler: null) is null, $"{what}: threw with room");
                warmUp.Dispose();
                for (int round = 0; round < RoundsPerCase; round++, rounds++)
                {
                    IDisposable buffer = create(options);
                    Exception? error = HeapFiller.ThrownOnAFreshThread(withRoom: null, () => atTheLimit(buffer), filler);
                    filler.Clear();
                    GC.Collect();
                    if (error is not null)
                    {
                        thrown++;
                        failures.Add($"{what}, round {round}: threw {error.GetType().Name} at {error.StackTrace?.Split('\n')[0].Trim()}");
                    }

                    // With room again: what the call left is let go of (a dispose that threw is called again, and finishes).
                    buffer.Dispose();
                }

                // Every block came back once: none counted in use or held, and what is rented now is disjoint.
                TieredMemoryPoolStatistics statistics = pool.GetStatistics();
                if (statistics.BytesInUse != 0)
                {
                    failures.Add($"{what}: {statistics.BytesInUse} bytes counted in use with every buffer disposed: a release lost its block");
                }

                if (statistics.Segmented.LiveBuffers != 0 || statistics.Segmented.BytesHeld != 0)
                {
                    failures.Add($"{what}: {statistics.Segmented.LiveBuffers} buffers live holding {statistics.Segmented.BytesHeld} bytes with every buffer disposed");
                }

                // Every tracker is free or parked in a thread's spare slot: one given back into neither is never reused
                // nor collected.
                (int trackers, int lost) = LostTrackers(pool);
                if (lost != 0)
                {
                    failures.Add($"{what}: {lost} of {trackers} trackers neither held, free nor parked with every buffer disposed: a dispose lost them");
                }

                List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, 4096, 16);
                owners.AddRange(DepotReservation.Rent(pool, 65536, 8));
                SafetyCases.AssertDisjoint(owners, what);
                owners.ForEach(static owner => owner.Dispose());
                pool.Dispose();
            }
        }

        // Whatever else ran out of memory meanwhile (the pools' timers) was this test's doing.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        TestContext.Current.TestOutputHelper?.WriteLine($"{rounds} releases at the heap limit, {thrown} threw");
        Assert.True(failures.Count == 0, $"{rounds} releases at the heap limit, {thrown} threw:\n{string.Join('\n', failures)}");
    }

    /// <summary>The trackers of the pool's segmented buffers, and how many of them are neither held, on the free list nor parked.</summary>
    private static (int Trackers, int Lost) LostTrackers(TieredMemoryPool pool)
    {
        const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
        SegmentedBufferCounters counters = pool.SegmentedCounters;
        var trackers = (List<SegmentedBufferTracker>)typeof(SegmentedBufferCounters).GetField("_trackers", Private)!.GetValue(counters)!;
        var free = (Stack<SegmentedBufferTracker>)typeof(SegmentedBufferCounters).GetField("_free", Private)!.GetValue(counters)!;
        lock (typeof(SegmentedBufferCounters).GetField("_lock", Private)!.GetValue(counters)!)
        {
            return (trackers.Count, trackers.Count(tracker => !tracker.IsHeld && !tracker.IsParked && !free.Contains(tracker)));
        }
    }

    private static SegmentedBufferWriter NewWriter(SegmentedBufferOptions options)
    {
        var writer = new SegmentedBufferWriter(options);
        for (int written = 0; written < MessageLength; written += 1000)
        {
            writer.GetSpan(1000)[..1000].Fill(1);
            writer.Advance(1000);
        }

        return writer;
    }

    private static SegmentedMemoryStream NewStream(SegmentedBufferOptions options)
    {
        var stream = new SegmentedMemoryStream(options);
        byte[] chunk = new byte[1000];
        for (int written = 0; written < MessageLength; written += chunk.Length)
        {
            stream.Write(chunk);
        }

        return stream;
    }
}
