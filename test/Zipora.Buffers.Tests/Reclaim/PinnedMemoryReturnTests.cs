using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel's mode (pages are pinned arrays): memory the pool lets go of must leave the process, not only the pool.
/// Resident memory is read from /proc/self/statm, so that test runs in a process of its own.
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
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(InPinnedArrayModeTheMemoryOfABurstLeavesTheProcessOneDelayAfterItIsReturned)))
        {
            return;
        }

        Skip.Unless(ProcessMemory.CanRead, "reads resident memory from /proc/self/statm, which only Linux has");
        var time = new FakeTimeProvider();
        TimeSpan delay = SafetyCases.IdleDelay;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, IdleReleaseDelay = delay, TimeProvider = time });
        // Its own process (see IsolatedProcess): no earlier test's garbage or committed heap hides the burst or the fall.
        // One small burst first, let go of and collected as the measured one will be: the runtime keeps static fields
        // in arrays on the pinned heap, so a type first used after the burst (on the release path) would put its
        // statics behind the burst's arrays, and that live array alone keeps their region committed (32 MB here).
        _ = WriteAndReturnABurst(pool, megabytes: 8);
        SafetyCases.Advance(time, 3 * delay);
        _ = Heap();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long before = ProcessMemory.SettledResidentBytes();
        long collections = PinnedMemoryCollector.Collections;

        long peak = WriteAndReturnABurst(pool, megabytes: 200);
        Assert.True(peak - before >= 180 * Megabyte, $"the burst should be resident: {before / Megabyte} MB before, {peak / Megabyte} MB after");

        // Three delays: the regions go idle, are unmapped (left to the GC) and the collector returns them.
        SafetyCases.Advance(time, 3 * delay);

        // The collector hands freed regions back to the OS a step at a time after the collection (the runtime's gradual
        // decommit), so resident memory is given real seconds to fall.
        long after = ProcessMemory.ResidentBytes();
        for (int wait = 0; wait < 150 && after - before > 20 * Megabyte; wait++)
        {
            Thread.Sleep(100);
            after = ProcessMemory.ResidentBytes();
        }

        Assert.True(PinnedMemoryCollector.Collections > collections, $"no aggressive collection was asked for: {pool.GetStatistics()}; munmaps {pool.GetStatistics().MunmapCalls}, awaiting {pool.GetStatistics().BytesAwaitingRelease}");
        TestContext.Current.TestOutputHelper?.WriteLine($"resident: {before / Megabyte} MB before, {peak / Megabyte} MB at the peak, {after / Megabyte} MB three delays later; GC {Heap()}");
        // Back within 20 MB (a tenth of the burst) of where it was: measured +1 MB.
        Assert.True(after - before <= 20 * Megabyte, $"resident memory should fall back: {before / Megabyte} MB before, {peak / Megabyte} MB at the peak, {after / Megabyte} MB three delays later; GC {Heap()}; {pool.GetStatistics()}");
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    /// <summary>
    /// Rents, writes and returns <paramref name="megabytes"/> 1 MB buffers; returns resident memory at the peak. A
    /// method of its own, so no stack slot of the test's frame keeps the last buffer's span: a span is an interior
    /// pointer, which keeps its pinned array alive, and one live array keeps its whole pinned-heap region committed
    /// (measured: 44 MB of the burst stayed resident that way).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static long WriteAndReturnABurst(TieredMemoryPool pool, int megabytes)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < megabytes; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent((int)Megabyte);
            owner.Memory.Span.Fill(7);
            owners.Add(owner);
        }

        owners.ForEach(owner => owner.Dispose());
        return ProcessMemory.ResidentBytes();
    }

    private static string Heap()
    {
        GCMemoryInfo info = GC.GetGCMemoryInfo(GCKind.Any);
        return $"committed {info.TotalCommittedBytes / Megabyte} MB, heap {info.HeapSizeBytes / Megabyte} MB, fragmented {info.FragmentedBytes / Megabyte} MB, poh {info.GenerationInfo[4].SizeAfterBytes / Megabyte} MB, loh {info.GenerationInfo[3].SizeAfterBytes / Megabyte} MB, total {GC.GetTotalMemory(false) / Megabyte} MB";
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

    [Fact]
    public void ADropOfCachedArraysBelowTheFloorDoesNotCostACollectionAndOneAtTheFloorDoes()
    {
        // A TieredArrayPool's trim under pressure: a full blocking collection is worth its pause only for 8 MB or more.
        long collections = PinnedMemoryCollector.Collections;
        Assert.False(PinnedMemoryCollector.AfterDrop(PinnedMemoryCollector.MinimumBytes - 1));
        Assert.True(PinnedMemoryCollector.AfterDrop(PinnedMemoryCollector.MinimumBytes));
        Assert.True(PinnedMemoryCollector.Collections > collections);
    }
}
