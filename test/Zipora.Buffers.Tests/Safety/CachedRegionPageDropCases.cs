using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What <see cref="CachedRegionPageDropSafetyTests"/> share: pools on a pausing allocator, regions returned to the
/// shared cache, a tick run on another thread.
/// </summary>
internal static class CachedRegionPageDropCases
{
    public const int LargeSize = 100_000;
    public const int HugeSize = 3_000_000;

    public static readonly TimeSpan Delay = SafetyCases.IdleDelay;

    /// <summary>A pool on <paramref name="allocator"/> and a fake clock, with a 10 s delay (its ticks fall every quarter delay from the clock's start).</summary>
    public static TieredMemoryPool Pool(FakeTimeProvider time, PageAllocator allocator, Action<TieredMemoryPoolOptions>? configure = null)
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.PageAllocator = allocator;
        configure?.Invoke(options);
        return new TieredMemoryPool(options);
    }

    /// <summary>
    /// An allocator that refuses reserved hugepages (as a machine with none does) and passes every other call to the
    /// OS: the tests here wait for page drops, and the pool drops no page of a hugetlb region, which a huge rent would
    /// get wherever the machine has free hugepages.
    /// </summary>
    public static PageAllocator WithoutReservedHugepages() => new ScriptedPageAllocator { RefuseMap = static (_, kind) => kind != PageKind.Normal };

    /// <summary>The safety cases' default-mode options on <see cref="WithoutReservedHugepages"/>.</summary>
    public static TieredMemoryPoolOptions OptionsWithoutReservedHugepages(FakeTimeProvider time)
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
        options.PageAllocator = WithoutReservedHugepages();
        return options;
    }

    /// <summary>Rents <paramref name="count"/> buffers of <paramref name="size"/> and fills each with a byte of its own (never zero).</summary>
    public static List<IMemoryOwner<byte>> RentFilled(TieredMemoryPool pool, int size, int count, byte first)
    {
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < count; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill((byte)(first + i));
            owners.Add(owner);
        }

        return owners;
    }

    /// <summary>
    /// Disposes <paramref name="owners"/> on a thread that never rented from the pool, so it has no slot: every region
    /// goes to the shared cache, where the ticks drop pages.
    /// </summary>
    public static void ReturnToSharedCache(IEnumerable<IMemoryOwner<byte>> owners)
    {
        var thread = new Thread(() =>
        {
            foreach (IMemoryOwner<byte> owner in owners)
            {
                owner.Dispose();
            }
        });
        thread.Start();
        thread.Join();
    }

    /// <summary>Whether every byte of a live owner is still <paramref name="expected"/>; the first that is not, or -1.</summary>
    public static int FirstLost(IMemoryOwner<byte> owner, byte expected) => owner.Memory.Span.IndexOfAnyExcept(expected);

    /// <summary>
    /// Moves the clock on by <paramref name="by"/> on another thread (the fake clock runs the pool's ticks on the
    /// advancing thread) and waits until the tick holds an advice of the allocator; the caller resumes it and joins.
    /// </summary>
    public static Thread TickUntilPaused(FakeTimeProvider time, PausingAdviceAllocator allocator, TimeSpan by, PageAdvice advice, Action<Exception> failed)
    {
        allocator.PauseNext(advice);
        var ticking = new Thread(() =>
        {
            try
            {
                SafetyCases.Advance(time, by);
            }
            catch (Exception error)
            {
                failed(error);
            }
        });
        ticking.Start();
        Assert.True(allocator.WaitUntilPaused(TimeSpan.FromSeconds(5)), $"no tick dropped cached pages within {by} of fake time: the test proves nothing");
        return ticking;
    }

    public static string Unmapped(TieredMemoryPoolStatistics statistics) =>
        $"{statistics.Large.BytesRetained} large + {statistics.Huge.BytesRetained} huge bytes retained, {statistics.BytesAwaitingRelease} awaiting release, {statistics.Large.BytesEvicted + statistics.Huge.BytesEvicted} of {statistics.Large.BytesAllocated + statistics.Huge.BytesAllocated} bytes mapped let go of, {statistics.MunmapCalls} munmaps";

    /// <summary>Every region the pool mapped was let go of and nothing waits to be unmapped (MmapCalls also counts refused MAP_HUGETLB attempts).</summary>
    public static bool NothingMapped(TieredMemoryPoolStatistics statistics) =>
        statistics.Large.BytesRetained == 0 && statistics.Huge.BytesRetained == 0 && statistics.BytesAwaitingRelease == 0
        && statistics.Large.BytesEvicted == statistics.Large.BytesAllocated && statistics.Huge.BytesEvicted == statistics.Huge.BytesAllocated;
}
