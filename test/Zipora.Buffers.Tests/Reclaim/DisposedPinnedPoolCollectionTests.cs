using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A host shut down within the collector's rest of its last aggressive collection (a burst's, or the previous host's):
/// its disposed pool lets go of every pinned array at once, finds the collector resting, and its timer then pauses, as
/// nothing waits in the pool. The collection the README promises ("once pools have let go of 8 MB or more of them, the
/// pool asks for one aggressive collection, at most once per 30 s") must still come when the rest is over, or the
/// pinned heap of the last host stays committed for the life of the process.
/// </summary>
/// <remarks>Changes the collector's rest and sets off aggressive collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class DisposedPinnedPoolCollectionTests : IDisposable
{
    private const int Megabyte = 1024 * 1024;

    private readonly TimeSpan _interval = PinnedMemoryCollector.MinimumInterval;

    public void Dispose() => PinnedMemoryCollector.MinimumInterval = _interval;

    [Fact]
    public void ADisposedPoolsPinnedArraysAreCollectedOnceTheRestIsOverThoughItsTimerPaused()
    {
        // An allocator of its own: the process-wide one counts what every other pinned pool lets go of.
        var allocator = new Native.PinnedArrayPageAllocator();
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        var rented = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 16; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(Megabyte);
            owner.Memory.Span.Fill(1);
            rented.Add(owner);
        }

        // A collection just now (a burst's, or the previous host's): the rest has begun.
        PinnedMemoryCollector.MinimumInterval = TimeSpan.Zero;
        Assert.True(PinnedMemoryCollector.AfterDrop(PinnedMemoryCollector.MinimumBytes));
        PinnedMemoryCollector.MinimumInterval = TimeSpan.FromMilliseconds(500);
        var resting = Stopwatch.StartNew();
        long collections = PinnedMemoryCollector.Collections;

        rented.ForEach(static owner => owner.Dispose());
        pool.Dispose();
        SafetyCases.Advance(time, 3 * SafetyCases.IdleDelay);
        if (resting.Elapsed < TimeSpan.FromMilliseconds(400))
        {
            // Still resting (a loaded machine may have taken longer to get here): nothing was collected, and the arrays
            // the dispose let go of are counted.
            Assert.Equal(collections, PinnedMemoryCollector.Collections);
            Assert.True(allocator.UnmappedBytes >= 16 * Megabyte, $"the dispose let go of {allocator.UnmappedBytes} bytes of pinned arrays");
        }

        // The rest ends; the pool's clock goes on (a paused timer does not tick on it).
        var clock = Stopwatch.StartNew();
        while (PinnedMemoryCollector.Collections == collections && clock.Elapsed < TimeSpan.FromSeconds(2))
        {
            Thread.Sleep(50);
            SafetyCases.Advance(time, SafetyCases.IdleDelay);
        }

        Assert.True(PinnedMemoryCollector.Collections > collections, $"no collection {clock.ElapsedMilliseconds} ms after the dispose, {allocator.UnmappedBytes >> 20} MB of pinned arrays let go of");
        Assert.InRange(allocator.UnmappedBytes, 0, PinnedMemoryCollector.MinimumBytes - 1);
    }
}
