using System;
using System.Collections.Generic;
using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The list of mappings waiting out their delay gives back, at a tick, exactly the ones due, each once, however many
/// more still wait behind them: a burst returned past the caps leaves hundreds of thousands on it (742,656 in the
/// phase-shift benchmark), and a tick that moved every waiting mapping for each one it took cost minutes.
/// </summary>
public sealed class DeferredUnmapsTests
{
    private const int EachHalf = 100_000;

    [Fact]
    public void ATickUnmapsEachDueMappingOnceAndLeavesTheRestWaitingInTimeLinearInTheList()
    {
        var time = new FakeTimeProvider();
        var clock = new IdleClock(TimeSpan.FromSeconds(10), time);
        var allocator = new UnmapRecorder();
        var unmaps = new DeferredUnmaps(new PageSource(allocator, fallback: null, limit: 0, lazyFree: false), clock);
        nuint page = PageAllocator.PageSize;

        // Half let go of a delay ago, then half let go of now: the due ones lie before those still waiting.
        LetGo(unmaps, clock, first: 1, count: EachHalf);
        PassTheDelay(time, clock);
        LetGo(unmaps, clock, first: EachHalf + 1, count: EachHalf);

        var elapsed = Stopwatch.StartNew();
        unmaps.ReleaseDue();
        elapsed.Stop();
        Assert.Equal(EachHalf, allocator.Unmapped.Count);
        Assert.All(allocator.Unmapped, static address => Assert.InRange(address / (nint)PageAllocator.PageSize, 1, EachHalf));
        Assert.Equal(EachHalf * (long)page, unmaps.Bytes);
        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(3), $"a tick took {elapsed.Elapsed.TotalSeconds:F1} s to unmap {EachHalf} due mappings with {EachHalf} more waiting");

        PassTheDelay(time, clock);
        unmaps.ReleaseDue();
        Assert.Equal(2 * EachHalf, allocator.Unmapped.Count);
        Assert.True(unmaps.IsEmpty);
    }

    private static void LetGo(DeferredUnmaps unmaps, IdleClock clock, int first, int count)
    {
        for (int i = first; i < first + count; i++)
        {
            unmaps.Release(i * (nint)PageAllocator.PageSize, PageAllocator.PageSize, PageBacking.Plain, clock.Epoch);
        }
    }

    private static void PassTheDelay(FakeTimeProvider time, IdleClock clock)
    {
        for (long tick = 0; tick <= clock.DelayInTicks; tick++)
        {
            time.Advance(clock.Period);
            _ = clock.Advance(time.GetTimestamp());
        }
    }

    /// <summary>Maps nothing; takes every hint and unmap, and fails the test on an unmap of an address given back already.</summary>
    private sealed class UnmapRecorder : PageAllocator
    {
        public HashSet<nint> Unmapped { get; } = [];

        public override string Name => "unmap recorder";

        public override bool SupportsAdvice => true;

        protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
        {
            address = 0;
            return false;
        }

        public override bool Unmap(nint address, nuint length)
        {
            Assert.True(Unmapped.Add(address), $"0x{address:x} unmapped twice");
            return true;
        }

        public override bool TryAdvise(nint address, nuint length, PageAdvice advice) => true;

        public override bool TryProtect(nint address, nuint length, PageProtection protection) => true;
    }
}
