using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool made at start-up rents for the first time where managed memory has run out: a service's first request in a
/// container at its GC heap limit. That rent maps the process's first pages, and the page allocator's mapping check
/// (<c>MappingLedger</c>, read by every mmap and munmap, on or off) made its statics there: its type initializer threw
/// out of memory after the mmap, and a type initializer that threw throws for good. The mapping was lost, and every
/// later rent that mapped, and every unmap of every pool (trims, idle release, disposes), threw
/// <see cref="TypeInitializationException"/> for the life of the process. The check's statics are now made with the
/// allocator, when the first pool is made.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FirstMappingAtTheHeapLimitSafetyTests
{
    private const int HeadroomStep = 16;
    private const int MostHeadroom = 8 * 1024;

    [Fact]
    public void TheProcesssFirstRentAtTheHeapLimitLeavesEveryLaterRentAndDisposeWorking()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FirstMappingAtTheHeapLimitSafetyTests), nameof(TheProcesssFirstRentAtTheHeapLimitLeavesEveryLaterRentAndDisposeWorking)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });

        // The pool's first rent, so the process's first mapping: refused for want of managed memory, it must take nothing.
        string sweep = FirstRunSweep.AtTheHeapLimit(() => pool.Rent(64).Dispose(), HeadroomStep, MostHeadroom, "the first rent");

        // With room again: every tier rents and returns, and the pool's dispose unmaps everything it mapped.
        Exception? later = Record.Exception(() =>
        {
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                pool.Rent(size).Dispose();
            }
        });
        Exception? dispose = Record.Exception(pool.Dispose);
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);

        Assert.True(later is null && dispose is null, $"{sweep}\nthe rents with room: {later}\nthe dispose: {dispose}");
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls && drained.BytesInUse == 0 && drained.BytesAwaitingRelease == 0, $"three delays after the dispose: {drained}");
    }
}
