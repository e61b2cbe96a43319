using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A page allocator over another that records every advice and can hold the next idle-page advice (DONTNEED or
/// FREE) until the test lets it go: the tick that drops cached regions' pages then stops between marking them under
/// the tier's gate and clearing the marks, and the test acts in that window.
/// </summary>
internal sealed class PausingAdviceAllocator(PageAllocator? inner = null) : PageAllocator
{
    private readonly PageAllocator _inner = inner ?? Default;
    private readonly ManualResetEventSlim _entered = new();
    private readonly ManualResetEventSlim _resume = new();
    // The advice to hold, plus one; 0 for none.
    private int _pauseOn;

    /// <summary>Every advice asked for, with its range, in order.</summary>
    public ConcurrentQueue<(nint Address, nuint Length, PageAdvice Advice)> Advised { get; } = new();

    /// <summary>The range of the advice that paused.</summary>
    public (nint Address, nuint Length) PausedOn { get; private set; }

    public override string Name => "pausing";

    public override bool SupportsHugeTlb => _inner.SupportsHugeTlb;

    public override bool SupportsAdvice => _inner.SupportsAdvice;

    /// <summary>Holds the next advice of kind <paramref name="advice"/> until <see cref="Resume"/>.</summary>
    public void PauseNext(PageAdvice advice)
    {
        _entered.Reset();
        _resume.Reset();
        Volatile.Write(ref _pauseOn, (int)advice + 1);
    }

    /// <summary>Waits until an advice is held; false after the timeout.</summary>
    public bool WaitUntilPaused(TimeSpan timeout) => _entered.Wait(timeout);

    public void Resume() => _resume.Set();

    /// <summary>How many advices of <paramref name="advice"/> fell on the range starting at <paramref name="address"/>.</summary>
    public int CountOn(nint address, PageAdvice advice) => Advised.Count(a => a.Address == address && a.Advice == advice);

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address) =>
        _inner.TryMap(length, alignment, kind, out address);

    public override bool TryGetBackingArray(nint address, out byte[]? array, out int offset) =>
        _inner.TryGetBackingArray(address, out array, out offset);

    public override bool Unmap(nint address, nuint length) => _inner.Unmap(address, length);

    public override bool TryProtect(nint address, nuint length, PageProtection protection) => _inner.TryProtect(address, length, protection);

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        Advised.Enqueue((address, length, advice));
        int pauseOn = (int)advice + 1;
        if (Volatile.Read(ref _pauseOn) == pauseOn && Interlocked.CompareExchange(ref _pauseOn, 0, pauseOn) == pauseOn)
        {
            PausedOn = (address, length);
            _entered.Set();

            // Never hangs a test run: a test that fails before it resumes lets the tick go on its own.
            _ = _resume.Wait(TimeSpan.FromSeconds(10));
        }

        return _inner.TryAdvise(address, length, advice);
    }
}

/// <summary>What the round 11 tests share: pools on a pausing allocator, regions returned to the shared cache, a tick run on another thread.</summary>
internal static class AttackRound11
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
