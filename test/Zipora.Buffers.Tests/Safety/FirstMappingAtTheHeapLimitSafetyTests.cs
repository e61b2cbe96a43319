using System;
using System.Collections.Generic;
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
    private const int FullHeapProbe = 8 * 1024;
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
        var filler = new List<byte[]>(400_000);
        int attempts = 0;
        int fullAttempts = 0;
        Exception? atTheLimit = null;
        int headroom = 0;

        // The pool's first rent, so the process's first mapping, with the heap full but for a few bytes, more at each
        // attempt until the rent goes through: refused for want of managed memory, it must take nothing.
        for (; headroom <= MostHeadroom; headroom += HeadroomStep)
        {
            List<byte[]>? reserve = null;
            atTheLimit = HeapFiller.ThrownOnAFreshThread(
                withRoom: () =>
                {
                    reserve = HeapFiller.Reserve(headroom);
                    GC.Collect();
                },
                atTheLimit: () =>
                {
                    // A fill that left room (1 run in 5) is topped up; the reserve's room comes free only below.
                    for (int topUp = 0; topUp < 3 && HeapFiller.HasRoomFor(FullHeapProbe); topUp++)
                    {
                        HeapFiller.Fill(filler, largest: 1 << 20, smallest: 24);
                    }

                    fullAttempts += HeapFiller.HasRoomFor(FullHeapProbe) ? 0 : 1;
                    reserve!.Clear();
                    pool.Rent(64).Dispose();
                },
                filler);
            filler.Clear();
            GC.Collect();
            attempts++;
            if (atTheLimit is not OutOfMemoryException)
            {
                break;
            }
        }

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

        // Now and then a fill leaves room a top-up does not take (1 attempt in 4 or so): such an attempt proves less, but
        // the sweep must have met the full heap.
        TestContext.Current.SendDiagnosticMessage($"{attempts} attempts, {fullAttempts} with the heap full; the rent went through with {headroom} bytes of headroom");
        Assert.True(fullAttempts > 0, $"none of {attempts} rents had the heap full besides their headroom (no room for {FullHeapProbe} bytes): the test proves nothing");
        Assert.True(atTheLimit is null, $"the rent with {headroom} bytes of headroom threw other than OutOfMemoryException: {atTheLimit}");
        Assert.True(later is null && dispose is null, $"at the limit: {atTheLimit}\nthe rents with room: {later}\nthe dispose: {dispose}");
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls && drained.BytesInUse == 0 && drained.BytesAwaitingRelease == 0, $"three delays after the dispose: {drained}");
    }
}
