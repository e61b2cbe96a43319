using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pressure cap and the idle cap (<see cref="TieredMemoryPoolOptions.MaxRetainedBytes"/>) trim, then rest until the
/// pool is used again (README, Reliability). A trim that throws partway (out of managed memory for its tables at the GC
/// heap limit; here, where that cannot be timed, the tests' page allocator throws at a page drop) gave back nothing of
/// the tier it was in, so it is no trim to rest on: the next check trims again. Both caps noted the activity before the trim ran, and rested on it:
/// under memory pressure, the free pages stayed resident for as long as the pool was not used, while the process ran
/// into its limit. (The cap of <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>: FailedTrimAtTheCapHeapLimitSafetyTests.)
/// </summary>
public sealed class FailedCapTrimRetryTests
{
    private const int BlockSize = 4096;
    private const int Blocks = 16;

    [Fact]
    public void APressureTrimThatThrewPartwayIsRetriedAtTheNextPressureCheck()
    {
        var allocator = new ScriptedPageAllocator();
        using TieredMemoryPool pool = PoolWithFreePagesToDrop(allocator, maxRetainedBytes: null, out IMemoryOwner<byte> live);
        var reclaimable = (IReclaimablePool)pool;
        ThrowAtTheFirstPageDrop(allocator);

        Assert.Throws<InvalidOperationException>(reclaimable.TrimUnderPressure);
        int dropsAfterTheFailure = allocator.Advice.Count;

        // Nothing rented or returned since: the trim that threw does not count as one to rest on.
        reclaimable.TrimUnderPressure();
        Assert.Equal(2, pool.GetStatistics().PressureTrims);
        Assert.True(allocator.Advice.Count > dropsAfterTheFailure, "the retried trim dropped no page");

        // A trim that ran to its end is rested on, as before.
        reclaimable.TrimUnderPressure();
        Assert.Equal(2, pool.GetStatistics().PressureTrims);
        live.Dispose();
    }

    [Fact]
    public void AnIdleCapTrimThatThrewPartwayIsRetriedAtTheNextTick()
    {
        var allocator = new ScriptedPageAllocator();
        using TieredMemoryPool pool = PoolWithFreePagesToDrop(allocator, maxRetainedBytes: 0, out IMemoryOwner<byte> live);
        var reclaimable = (IReclaimablePool)pool;
        ThrowAtTheFirstPageDrop(allocator);

        // A tick whose idle delay never passes: only the cap can trim.
        Assert.Throws<InvalidOperationException>(() => reclaimable.ReleaseIdle(0, long.MaxValue));
        int dropsAfterTheFailure = allocator.Advice.Count;

        reclaimable.ReleaseIdle(0, long.MaxValue);
        int dropsAfterTheRetry = allocator.Advice.Count;
        Assert.True(dropsAfterTheRetry > dropsAfterTheFailure, "the next tick did not trim again: the cap rested on the trim that threw");

        // A trim that ran to its end is rested on, as before.
        reclaimable.ReleaseIdle(0, long.MaxValue);
        Assert.Equal(dropsAfterTheRetry, allocator.Advice.Count);
        live.Dispose();
    }

    /// <summary>
    /// A pool holding one slab of 4 KB blocks, all free but <paramref name="live"/>: a trim cannot unmap the slab, and
    /// drops the pages of the free blocks instead (one hint each).
    /// </summary>
    private static TieredMemoryPool PoolWithFreePagesToDrop(PageAllocator allocator, long? maxRetainedBytes, out IMemoryOwner<byte> live)
    {
        var options = new TieredMemoryPoolOptions
        {
            PageAllocator = allocator,
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = TimeSpan.FromHours(1),
        };
        if (maxRetainedBytes is { } cap)
        {
            options.MaxRetainedBytes = cap;
        }

        var pool = new TieredMemoryPool(options);
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < Blocks; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(BlockSize);
            owner.Memory.Span.Fill(1);
            owners.Add(owner);
        }

        live = owners[0];
        owners.GetRange(1, Blocks - 1).ForEach(static owner => owner.Dispose());
        return pool;
    }

    /// <summary>
    /// The first page drop throws; the later ones pass. Not an <see cref="OutOfMemoryException"/>: the pool takes that
    /// from a hint as a refusal (the hint's own call ran out of memory), so the trim would go on.
    /// </summary>
    private static void ThrowAtTheFirstPageDrop(ScriptedPageAllocator allocator)
    {
        bool thrown = false;
        allocator.BeforeAdvice = (_, _, _) =>
        {
            if (!thrown)
            {
                thrown = true;
                throw new InvalidOperationException("the page allocator failed a page drop of the trim");
            }
        };
    }
}
