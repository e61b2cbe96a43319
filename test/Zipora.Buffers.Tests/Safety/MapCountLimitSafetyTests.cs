using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pool against the kernel's real <c>vm.max_map_count</c>, reached by the process itself (<see cref="MapEntryHog"/>):
/// rents either work or throw the documented exception, no byte goes to two owners, an unmap the kernel refuses is
/// counted and done once entries are free, and nothing the pool mapped is left in <c>/proc/self/maps</c>.
/// </summary>
public sealed class MapCountLimitSafetyTests
{
    private static readonly int[] s_margins = [0, 1, 2, 5, 20];

    /// <summary>
    /// What the runtime itself needs to live at the limit: its write-xor-execute double mapping fails to release a
    /// view there and ends the process ("Releasing the double mapped memory failed"), and code compiled at the limit
    /// (a tier-up, say) needs new stub pages and ends it too (an uncaught <c>Exception*</c> from a refused mprotect).
    /// Every method runs once away from the limit, fully optimized, and is never compiled again.
    /// </summary>
    private static readonly string[] s_runtimeAtTheLimit = ["DOTNET_EnableWriteXorExecute=0", "DOTNET_TieredCompilation=0"];

    [Fact]
    public void EveryTierRentsOrRefusesAtEachMarginAndGivesEverythingBackOnceEntriesAreFree()
    {
        Skip.Unless(MapEntryHog.CanRun, "needs Linux's /proc/self/maps and vm.max_map_count");
        if (IsolatedProcess.RunsElsewhere(typeof(MapCountLimitSafetyTests), nameof(EveryTierRentsOrRefusesAtEachMarginAndGivesEverythingBackOnceEntriesAreFree), s_runtimeAtTheLimit))
        {
            return;
        }

        int before = MapEntryHog.EntriesNow();
        using var hog = new MapEntryHog();

        // Once away from the limit, so that every method the pass runs is compiled before the process is at it.
        EveryTierAtEachMargin(hog, atLimit: false);
        EveryTierAtEachMargin(hog, atLimit: true);
        TestContext.Current.SendDiagnosticMessage($"process had {before} entries before the hog, limit {MapEntryHog.MaxMapCount}");
    }

    private static void EveryTierAtEachMargin(MapEntryHog hog, bool atLimit)
    {
        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();
        foreach (OwnerMode mode in SafetyCases.BothOwnerModes)
        {
            var pool = new TieredMemoryPool(allocator.PoolOptions(mode, time));
            var live = new List<IMemoryOwner<byte>>();
            var stamps = new List<long>();
            var outcomes = new List<string>();
            foreach (int margin in s_margins)
            {
                int held = atLimit ? hog.LeaveOnly(margin) : 0;
                foreach (int size in SafetyCases.OneSizePerTier)
                {
                    for (int i = 0; i < 3; i++)
                    {
                        try
                        {
                            IMemoryOwner<byte> owner = pool.Rent(size);
                            live.Add(owner);
                            stamps.Add(live.Count);
                            SafetyCases.Stamp(owner, live.Count, $"margin {margin}");
                            outcomes.Add($"m{margin}/{size}:ok");
                        }
                        catch (OutOfMemoryException refused)
                        {
                            outcomes.Add($"m{margin}/{size}:{refused.GetType().Name}");
                        }
                    }
                }

                SafetyCases.AssertDisjoint(live, $"{mode} at margin {margin}");
                SafetyCases.AssertStamps(live, stamps, $"{mode} at margin {margin}");
                TestContext.Current.SendDiagnosticMessage($"{mode} margin {margin}: hog {held} entries; {string.Join(' ', outcomes)}; {pool.GetStatistics().UnmapFailures} unmaps refused");
                outcomes.Clear();
            }

            // Half go back and the pool is trimmed and ticked at the limit.
            if (atLimit)
            {
                hog.LeaveOnly(0);
            }

            for (int i = 0; i < live.Count; i += 2)
            {
                live[i].Dispose();
            }

            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
            pool.Trim();
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
            TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
            TestContext.Current.SendDiagnosticMessage($"{mode} at the limit after trims: {trimmed.UnmapFailures} unmaps refused, {trimmed.BytesAwaitingRelease} bytes awaiting release, strays {Strays.Bytes}, {trimmed.MmapCalls} maps, {trimmed.MunmapCalls} unmaps, {trimmed.FallbackAllocations} fallbacks");

            List<IMemoryOwner<byte>> kept = [.. live.Where((_, i) => i % 2 == 1)];
            SafetyCases.AssertDisjoint(kept, $"{mode} after trims at the limit");
            SafetyCases.AssertStamps(kept, [.. stamps.Where((_, i) => i % 2 == 1)], $"{mode} after trims at the limit");
            kept.ForEach(static owner => owner.Dispose());
            pool.Dispose();
            hog.GiveBack(int.MaxValue);
            SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
            TieredMemoryPoolStatistics drained = pool.GetStatistics();
            TestContext.Current.SendDiagnosticMessage($"{mode} drained: {drained.UnmapFailures} unmaps refused, {drained.MmapCalls} maps, {drained.MunmapCalls} unmaps, {drained.FallbackAllocations} fallbacks, strays {Strays.Bytes}");
            allocator.AssertNoneLive($"{mode}: the pool disposed and drained once entries were free");
            Assert.Equal(0, Strays.Bytes);
            Assert.Equal(0, Strays.AbandonedBytes);
        }
    }

    private static StrayMappings Strays => ((UnixPageAllocator)PageAllocator.Default).Strays;
}
