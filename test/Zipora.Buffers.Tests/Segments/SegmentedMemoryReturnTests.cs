using System;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What a burst of segmented messages leaves behind, read from the process's resident memory rather than the pool's
/// counters: once the streams are disposed and the pool's idle delay has passed, the memory is gone. Resident memory
/// is read from /proc/self/statm, so the test runs in a process of its own.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SegmentedMemoryReturnTests
{
    private const long Megabyte = 1024 * 1024;
    private const int Messages = 256;
    private const int ChunksPerMessage = 16;

    [Fact]
    public void TheMemoryOfABurstOfMessagesLeavesTheProcessAtThePoolsFirstTickAfterOneIdleDelay()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(TheMemoryOfABurstOfMessagesLeavesTheProcessAtThePoolsFirstTickAfterOneIdleDelay)))
        {
            return;
        }

        Skip.Unless(ProcessMemory.CanRead, "reads resident memory from /proc/self/statm, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = SafetyCases.IdleDelay, TimeProvider = time });
        var options = new SegmentedBufferOptions { Pool = pool };
        byte[] chunk = new byte[64 * 1024];
        System.Array.Fill(chunk, (byte)7);
        // Its own process (see IsolatedProcess): no earlier test's garbage or committed heap hides the burst or the fall.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long before = ProcessMemory.SettledResidentBytes();

        // 256 messages of 1 MB alive at once, written in 64 KB chunks: segments of 4 KB growing to 128 KB, from the
        // medium and the large tier.
        var streams = new List<SegmentedMemoryStream>();
        for (int message = 0; message < Messages; message++)
        {
            var stream = new SegmentedMemoryStream(options);
            for (int i = 0; i < ChunksPerMessage; i++)
            {
                stream.Write(chunk);
            }

            streams.Add(stream);
        }

        // Nearly all of the burst's 256 MB must show, or the test proves nothing.
        long peak = ProcessMemory.ResidentBytes();
        Assert.True(peak - before >= Messages * Megabyte * 9 / 10, $"the burst should be resident: {before / Megabyte} MB before, {peak / Megabyte} MB with the messages");
        streams.ForEach(stream => stream.Dispose());
        Assert.Equal(0, pool.GetStatistics().Segmented.BytesHeld);

        // The pool keeps what was returned for one idle delay (for the next burst to reuse), then gives it back at its
        // next tick (it ticks every quarter delay): the messages went back at this clock's tick 0, so the fifth tick,
        // 1.25 delays on, is the first a whole delay after any of them.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3 / 4);
        long keptForReuse = pool.GetStatistics().BytesRetained;
        Assert.True(keptForReuse > 0, "the pool should still keep some of the returned memory before the delay is over");
        SafetyCases.Advance(time, SafetyCases.IdleDelay / 2);
        long after = ProcessMemory.ResidentBytes();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TestContext.Current.TestOutputHelper?.WriteLine($"resident: {before / Megabyte} MB before, {peak / Megabyte} MB at the peak, {after / Megabyte} MB 1.25 delays after");
        Assert.True(after <= before + (before / 10), $"resident memory should be back within 10% of where it was: {before / Megabyte} MB before, {peak / Megabyte} MB at the peak, {keptForReuse / Megabyte} MB kept for reuse at 0.75 delays, {after / Megabyte} MB after; {statistics}");
        Assert.Equal(0, statistics.BytesRetained);
        Assert.Equal(0, statistics.BytesInUse);
    }
}
