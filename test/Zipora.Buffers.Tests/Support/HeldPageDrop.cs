using System;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Holds the first page drop (<c>MADV_DONTNEED</c>) an allocator is asked for, inside the allocator, until the test lets
/// it go: a trim held in the give-back of the slabs it let go of, with the heap's lock free.
/// </summary>
internal sealed class HeldPageDrop : IDisposable
{
    private readonly ManualResetEventSlim _dropping = new();
    private readonly ManualResetEventSlim _letGo = new();
    private int _held;

    public HeldPageDrop(LiveMappingsAllocator allocator)
    {
        allocator.BeforeAdvise = advice =>
        {
            if (advice == PageAdvice.DontNeed && Interlocked.Exchange(ref _held, 1) == 0)
            {
                _dropping.Set();
                _ = _letGo.Wait(TimeSpan.FromSeconds(30));
            }
        };
    }

    /// <summary>Waits until a page drop is held; false if none came within <paramref name="timeout"/>.</summary>
    public bool WaitUntilHeld(TimeSpan timeout) => _dropping.Wait(timeout);

    /// <summary>Lets the held drop (and every later one) go on.</summary>
    public void LetGo() => _letGo.Set();

    public void Dispose()
    {
        _letGo.Set();
        _dropping.Dispose();
        _letGo.Dispose();
    }
}
