using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region's rent whose guard page or hugepage hint throws in a custom allocator (its bug, passed to the renter) lets
/// the mapping it made go through the list of unmaps (<c>RegionTier.LetGoOfUnusedMapping</c>). Before, its place on the
/// list was reserved there, after the mapping was made: with the process at its GC heap limit that reservation threw
/// <see cref="OutOfMemoryException"/> whenever the list had to grow for it, and the mapping was never unmapped, counted
/// against <c>MaxBytesInUse</c> for the life of the process. Each round is a fresh pool holding 0 to
/// <see cref="MostHeld"/> regions (so the list is, in some round, full to its capacity), whose next rent fills the heap
/// from inside the allocator's call and then throws; swept <see cref="Sweeps"/> times, in a child process at the GC heap limit.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class UnusedMappingHeapLimitSafetyTests
{
    private const int MostHeld = 8;
    private const int Sweeps = 5;

    [Fact]
    public void AGuardedRegionWhoseGuardPageThrowsAtTheHeapLimitLeavesNoMappingBehind()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(UnusedMappingHeapLimitSafetyTests), nameof(AGuardedRegionWhoseGuardPageThrowsAtTheHeapLimitLeavesNoMappingBehind)))
        {
            return;
        }

        Sweep(100_000, OwnerMode.DiagnosticsAll, (allocator, fail) => allocator.BeforeProtect = fail);
    }

    [Fact]
    public void AHugeRegionWhoseHugepageHintThrowsAtTheHeapLimitLeavesNoMappingBehind()
    {
        // Only a system with transparent hugepages has the huge tier advise its mappings.
        Skip.Unless(HugePageInfo.Read().TransparentHugePagesAvailable, "no transparent hugepages: the huge tier gives no hint to throw");
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(UnusedMappingHeapLimitSafetyTests), nameof(AHugeRegionWhoseHugepageHintThrowsAtTheHeapLimitLeavesNoMappingBehind)))
        {
            return;
        }

        Sweep(3 * 1024 * 1024, OwnerMode.Default, (allocator, fail) => allocator.BeforeAdvise = advice =>
        {
            if (advice == PageAdvice.HugePage)
            {
                fail();
            }
        });
    }

    private static void Sweep(int size, OwnerMode mode, Action<LiveMappingsAllocator, Action> failNextCall)
    {
        var filler = new List<byte[]>(400_000);
        var failures = new List<string>();
        long backgroundFailures = BackgroundFailures.Count;
        int thrownByAllocator = 0;
        Exception? unexpected = FreshThread.Run(() =>
        {
            // Whether the heap is still full when the list would grow moves from run to run (without the fix, a sweep
            // leaked a mapping in 7 of 12): so the sweep is made several times.
            for (int sweep = 0; sweep < Sweeps; sweep++)
            {
                for (int held = 0; held <= MostHeld; held++)
                {
                    thrownByAllocator += Round(filler, size, mode, held, failNextCall, failures) ? 1 : 0;
                }
            }
        });

        // The pools' own background work (the pressure watcher's reads) may run out of memory at the limit too, and says so.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(unexpected is null, $"{unexpected}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(thrownByAllocator > 0, $"{size} B: no round's rent reached the allocator's call that throws");
    }

    /// <summary>One round on a fresh pool holding <paramref name="held"/> regions; whether the allocator's call threw in its rent.</summary>
    private static bool Round(List<byte[]> filler, int size, OwnerMode mode, int held, Action<LiveMappingsAllocator, Action> failNextCall, List<string> failures)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator(mostLive: 64);
        var pool = new TieredMemoryPool(allocator.PoolOptions(mode, time));
        var owners = new List<IMemoryOwner<byte>>(held);
        for (int i = 0; i < held; i++)
        {
            owners.Add(pool.Rent(size));
        }

        // Armed for the next rent only: the heap is filled from inside the allocator's call, then the call throws (an
        // exception made while there is room: a static one is made at its first use, which would be at the limit).
        var allocatorBug = new InvalidOperationException("the custom allocator's own bug, at the GC heap limit");
        bool reached = false;
        failNextCall(allocator, () =>
        {
            if (!reached)
            {
                reached = true;
                HeapFiller.Fill(filler, largest: 4096, smallest: 24);
                throw allocatorBug;
            }
        });
        Exception? thrown = null;
        try
        {
            owners.Add(pool.Rent(size));
        }
        catch (Exception error)
        {
            thrown = error;
        }

        filler.Clear();
        GC.Collect();
        failNextCall(allocator, () => { });

        // Everything goes in the end: the held regions returned, the pool disposed, three delays waited out.
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        pool.Dispose();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics end = pool.GetStatistics();
        (nint Address, nuint Length, long MappedAt, int Tag)[] live = allocator.Live();
        if (live.Length != 0 || end.BytesAwaitingRelease != 0 || end.MmapCalls != end.MunmapCalls)
        {
            string maps = ProcessMappings.CanRead ? string.Join("; ", live.Select(static m => ProcessMappings.Describe(m.Address, (long)m.Length))) : "maps unreadable";
            failures.Add($"{size} B, {held} held: {live.Length} mappings still mapped three delays after the disposal ({maps}); {end.MmapCalls} mmap calls, {end.MunmapCalls} munmap calls, {end.BytesAwaitingRelease} B awaiting release; the rent threw {thrown?.GetType().Name}: {thrown?.Message}");
        }
        else if (reached && thrown != allocatorBug)
        {
            failures.Add($"{size} B, {held} held: the rent threw {thrown}, not the allocator's exception");
        }

        return reached;
    }
}
