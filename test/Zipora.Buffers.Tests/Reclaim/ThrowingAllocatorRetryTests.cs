using System;
using System.Buffers;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A custom <see cref="Zipora.Buffers.Native.PageAllocator"/> whose call throws (its own bug, not a refusal: the
/// exception goes to the caller) has done nothing (PageAllocator.Unmap says an override that throws must have unmapped
/// nothing). The pool keeps the mapping it was about and gives it back later: nothing stays mapped, counted or listed
/// once the allocator behaves again. Found by the fault sweep (FaultSweepSafetyTests).
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class ThrowingAllocatorRetryTests
{
    private const int RegionSize = 100_000;

    [Fact]
    public void AnUnmapThatThrowsAtTheTickIsTriedAgainAtTheNextTick()
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        using var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, time));

        // A region let go of within its delay: its pages are dropped, and it waits on the list for its unmap.
        pool.Rent(RegionSize).Dispose();
        pool.Trim();
        Assert.Single(allocator.Live());
        var bug = new AllocatorBugOnce();
        allocator.BeforeUnmap = bug.Throw;

        // The tick that unmaps it meets the exception, and reports it (provoked here).
        long failuresBefore = BackgroundFailures.Count;
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 1.5);
        BackgroundFailureWatch.ProvokedSince(failuresBefore);
        Assert.Equal(1, bug.Thrown);

        // The next ticks unmap it: nothing mapped, waiting or counted.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        allocator.AssertNoneLive($"a delay after the unmap that threw\n{statistics}");
        Assert.True(statistics.BytesAwaitingRelease == 0, $"the mapping whose unmap threw is still counted as awaiting release\n{statistics}");
        Assert.Equal(statistics.MmapCalls, statistics.MunmapCalls);
    }

    [Theory]
    [InlineData(AllocatorCall.Advise, 3_000_000, OwnerMode.Default)]
    [InlineData(AllocatorCall.Protect, 100_000, OwnerMode.DiagnosticsAll)]
    [InlineData(AllocatorCall.Protect, 3_000_000, OwnerMode.DiagnosticsAll)]
    public void ARentWhoseHintOrGuardPageThrowsLeavesNoMappingBehind(AllocatorCall call, int size, OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        var allocator = new FaultInjectingAllocator(PageAllocator.Default) { Fault = (call, 1, FaultKind.Throw) };
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.PageAllocator = allocator;
        using (var pool = new TieredMemoryPool(options))
        {
            // The huge tier's hint for transparent hugepages, or a guard page of diagnostic mode, throws: so does the rent.
            _ = Assert.Throws<InjectedFaultException>(() => pool.Rent(size));
            Assert.True(allocator.Injected, $"{call} was never called");
            pool.Rent(size).Dispose();
        }

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        (nint Address, nuint Length)[] live = allocator.Live();
        Assert.True(live.Length == 0, $"{size} B, {call} threw in the rent: {live.Length} mappings still mapped three delays after the disposal ({string.Join(", ", live)})");
        Assert.Empty(allocator.Violations);
    }

    [Fact]
    public void ARegionWhosePageDropThrowsInATrimIsUnmappedLater()
    {
        var time = new FakeTimeProvider();
        var allocator = new FaultInjectingAllocator(PageAllocator.Default);
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.PageAllocator = allocator;
        using var pool = new TieredMemoryPool(options);

        // A cached region returned just now: the trim lets go of it, dropping its pages until its unmap a delay later.
        pool.Rent(RegionSize).Dispose();
        allocator.Fault = (AllocatorCall.Advise, allocator.Calls(AllocatorCall.Advise) + 1, FaultKind.Throw);
        _ = Assert.Throws<InjectedFaultException>(pool.Trim);
        Assert.True(allocator.Injected, "the trim dropped no page");

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        (nint Address, nuint Length)[] live = allocator.Live();
        Assert.True(live.Length == 0, $"{live.Length} mappings still mapped two delays after the trim whose page drop threw\n{statistics}");
        Assert.True(statistics.BytesAwaitingRelease == 0, $"still awaiting release\n{statistics}");
        Assert.Empty(allocator.Violations);
    }

    [Fact]
    public void SlabsWhosePageDropThrowsInATrimAreUnmappedLater()
    {
        var time = new FakeTimeProvider();
        var allocator = new FaultInjectingAllocator(PageAllocator.Default);
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.PageAllocator = allocator;
        using var pool = new TieredMemoryPool(options);

        // Blocks of a few slabs returned just now: the trim lets go of the slabs, all free, and drops their pages out of
        // the heap's lock; the second drop throws, and the slabs behind it are not tried.
        IMemoryOwner<byte>[] owners = Enumerable.Range(0, 100).Select(_ => pool.Rent(4096)).ToArray();
        Array.ForEach(owners, owner => owner.Dispose());
        allocator.Fault = (AllocatorCall.Advise, allocator.Calls(AllocatorCall.Advise) + 2, FaultKind.Throw);
        _ = Assert.Throws<InjectedFaultException>(pool.Trim);
        Assert.True(allocator.Injected, "the trim dropped no page");
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        Assert.True(trimmed.Medium.BytesAllocated - trimmed.Medium.BytesEvicted <= trimmed.BytesAwaitingRelease, $"the slabs let go of are neither gone nor awaiting release\n{trimmed}");

        // Listed as refused, every one is unmapped once its delay is over, and counted evicted then.
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        (nint Address, nuint Length)[] live = allocator.Live();
        Assert.True(live.Length == 0, $"{live.Length} mappings still mapped two delays after the trim whose page drop threw\n{statistics}");
        Assert.True(statistics.BytesAwaitingRelease == 0, $"still awaiting release\n{statistics}");
        Assert.Equal(statistics.Medium.BytesAllocated, statistics.Medium.BytesEvicted);
        Assert.Empty(allocator.Violations);
    }
}
