using System;
using System.Collections.Concurrent;
using System.Linq;
using System.Threading;
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

    // Never reserved hugepages, even where the machine has free ones: the pool drops no page of theirs (it maps base
    // pages over them, or keeps them until the unmap), so a test waiting for the drop advice would wait for nothing.
    public override bool SupportsHugeTlb => false;

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
