using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel's mode (pages are pinned arrays): memory the pool lets go of must leave the process, not only the pool.
/// Resident memory is read from /proc/self/statm, so the tests run alone.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class PinnedMemoryReturnTests : IDisposable
{
    private const long Megabyte = 1024 * 1024;

    // The collector rests 30 s between collections; the tests here must not wait for each other's.
    private readonly TimeSpan _interval = PinnedMemoryCollector.MinimumInterval;

    public PinnedMemoryReturnTests() => PinnedMemoryCollector.MinimumInterval = TimeSpan.Zero;

    public void Dispose() => PinnedMemoryCollector.MinimumInterval = _interval;

    [Fact]
    public void InPinnedArrayModeTheMemoryOfABurstLeavesTheProcessOneDelayAfterItIsReturned()
    {
        Skip.Unless(ProcessMemory.CanRead, "reads resident memory from /proc/self/statm, which only Linux has");
        var time = new FakeTimeProvider();
        TimeSpan delay = SafetyCases.IdleDelay;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, IdleReleaseDelay = delay, TimeProvider = time });
        // Start from a heap with nothing free left committed: earlier tests' garbage would otherwise be reused by the
        // burst, and the burst would not show in resident memory.
        SafetyCases.CollectEverything();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long before = ProcessMemory.SettledResidentBytes();
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
        // At least half the 200 MB must show, or the test proves nothing: not all of it, since the burst may reuse
        // pinned-heap pages an earlier test left committed (a fresh-clone CI run showed 147 MB).
        Assert.True(peak - before >= 100 * Megabyte, $"the burst should be resident: {before / Megabyte} MB before, {peak / Megabyte} MB after");

        // Three delays: the regions go idle, are unmapped (left to the GC) and the collector returns them.
        SafetyCases.Advance(time, 3 * delay);

        // The collector hands freed regions back to the OS a step at a time after the collection (the runtime's gradual
        // decommit), so resident memory is given real seconds to fall: up to 15, as a fresh-clone CI run on a busy
        // machine was still 9 MB over the bound after 5 (the bound itself is unchanged; a quiet run meets it at once).
        long after = ProcessMemory.ResidentBytes();
        for (int wait = 0; wait < 150 && after - before > 40 * Megabyte; wait++)
        {
            Thread.Sleep(100);
            after = ProcessMemory.ResidentBytes();
        }

        Assert.True(PinnedMemoryCollector.Collections > collections, $"no aggressive collection was asked for: {pool.GetStatistics()}; munmaps {pool.GetStatistics().MunmapCalls}, awaiting {pool.GetStatistics().BytesAwaitingRelease}");
        // Back within 40 MB of where it was (the burst showed at least 100 MB above it, checked before): not "fell by
        // 150 MB from the peak", since the burst may partly reuse pinned-heap pages an earlier test left committed.
        Assert.True(after - before <= 40 * Megabyte, $"resident memory should fall back: {before / Megabyte} MB before, {peak / Megabyte} MB at the peak, {after / Megabyte} MB three delays later; {pool.GetStatistics()}");
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    [Fact]
    public void ASmallReleaseDoesNotCostACollectionAndABigOneDoes()
    {
        // An allocator of its own: the process-wide one counts what every other pinned pool lets go of.
        var allocator = new Native.PinnedArrayPageAllocator();
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, IdleReleaseDelay = SafetyCases.IdleDelay, TimeProvider = time });
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 4; i++)
        {
            owners.Add(pool.Rent((int)Megabyte));
        }

        owners.ForEach(owner => owner.Dispose());
        pool.Trim();
        SafetyCases.Advance(time, 3 * SafetyCases.IdleDelay);
        Assert.InRange(allocator.UnmappedBytes, 4 * Megabyte, PinnedMemoryCollector.MinimumBytes - 1);
        Assert.False(PinnedMemoryCollector.AfterRelease(allocator));

        owners.Clear();
        for (int i = 0; i < 8; i++)
        {
            owners.Add(pool.Rent((int)Megabyte));
        }

        owners.ForEach(owner => owner.Dispose());
        pool.Trim();
        SafetyCases.Advance(time, 3 * SafetyCases.IdleDelay);
        Assert.Equal(0, allocator.UnmappedBytes);
    }
}
