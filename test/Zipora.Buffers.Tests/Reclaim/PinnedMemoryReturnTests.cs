using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel's mode (pages are pinned arrays): memory the pool lets go of must leave the process, not only the pool.
/// Resident memory is read from /proc/self/statm, so the tests run alone.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class PinnedMemoryReturnTests
{
    private const long Megabyte = 1024 * 1024;

    [Fact]
    public void InPinnedArrayModeTheMemoryOfABurstLeavesTheProcessOneDelayAfterItIsReturned()
    {
        Assert.SkipUnless(ProcessMemory.CanRead, "reads resident memory from /proc/self/statm, which only Linux has");
        TimeSpan interval = PinnedMemoryCollector.MinimumInterval;
        PinnedMemoryCollector.MinimumInterval = TimeSpan.Zero;
        try
        {
            var time = new FakeTimeProvider();
            TimeSpan delay = SafetyCases.IdleDelay;
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, IdleReleaseDelay = delay, TimeProvider = time });
            SafetyCases.CollectEverything();
            long before = ProcessMemory.ResidentBytes();
            long collections = PinnedMemoryCollector.Collections;

            // A burst of 200 MB of large buffers, written so it is resident, then returned.
            var owners = new List<IMemoryOwner<byte>>();
            for (int i = 0; i < 200; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent((int)Megabyte);
                owner.Memory.Span.Fill(7);
                owners.Add(owner);
            }

            owners.ForEach(owner => owner.Dispose());
            long peak = ProcessMemory.ResidentBytes();
            Assert.True(peak - before >= 180 * Megabyte, $"the burst should be resident: {before / Megabyte} MB before, {peak / Megabyte} MB after");

            // Three delays: the regions go idle, are unmapped (left to the GC) and the collector returns them.
            SafetyCases.Advance(time, 3 * delay);

            long after = ProcessMemory.ResidentBytes();
            Assert.True(PinnedMemoryCollector.Collections > collections, $"no aggressive collection was asked for: {pool.GetStatistics()}; munmaps {pool.GetStatistics().MunmapCalls}, awaiting {pool.GetStatistics().BytesAwaitingRelease}");
            Assert.True(after - before <= 40 * Megabyte, $"resident memory should fall back: {before / Megabyte} MB before, {peak / Megabyte} MB at the peak, {after / Megabyte} MB three delays later");
            Assert.Equal(0, pool.GetStatistics().BytesRetained);
        }
        finally
        {
            PinnedMemoryCollector.MinimumInterval = interval;
        }
    }

    [Fact]
    public void ASmallReleaseDoesNotCostACollection()
    {
        TimeSpan interval = PinnedMemoryCollector.MinimumInterval;
        PinnedMemoryCollector.MinimumInterval = TimeSpan.Zero;
        try
        {
            var time = new FakeTimeProvider();
            TimeSpan delay = SafetyCases.IdleDelay;
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, IdleReleaseDelay = delay, TimeProvider = time });

            // Drain what earlier tests may have left pending, then let go of 4 MB only, half the threshold.
            PinnedMemoryCollector.AfterRelease(Native.PageAllocator.PinnedArrays);
            long collections = PinnedMemoryCollector.Collections;
            for (int i = 0; i < 4; i++)
            {
                pool.Rent((int)Megabyte).Dispose();
            }

            pool.Trim();
            SafetyCases.Advance(time, 3 * delay);

            Assert.Equal(collections, PinnedMemoryCollector.Collections);
        }
        finally
        {
            PinnedMemoryCollector.MinimumInterval = interval;
        }
    }
}
