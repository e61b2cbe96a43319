using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>A page allocator over the real one that refuses what a test tells it to, and counts what it was asked.</summary>
internal sealed class ScriptedPageAllocator : PageAllocator
{
    private readonly PageAllocator _inner;

    public ScriptedPageAllocator(PageAllocator? inner = null) => _inner = inner ?? Default;

    public Func<nuint, PageKind, bool> RefuseMap { get; set; } = static (_, _) => false;

    public bool RefuseAdvice { get; set; }

    /// <summary>Refuse every unmap, as the kernel does when splitting a mapping would pass <c>vm.max_map_count</c>.</summary>
    public bool RefuseUnmap { get; set; }

    public bool HugeTlbSupported { get; set; } = true;

    public int MapRequests { get; private set; }

    public int HugeTlbRequests { get; private set; }

    public int Unmaps { get; private set; }

    public System.Collections.Concurrent.ConcurrentQueue<PageAdvice> Advice { get; } = new();

    /// <summary>Called with each hint's range and kind before it is passed on: a test's way in between the pool's steps.</summary>
    public Action<nint, nuint, PageAdvice>? BeforeAdvice { get; set; }

    public override string Name => "scripted";

    public override bool SupportsHugeTlb => HugeTlbSupported;

    public override bool SupportsAdvice => _inner.SupportsAdvice;

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        MapRequests++;
        if (kind != PageKind.Normal)
        {
            HugeTlbRequests++;
        }

        if (RefuseMap(length, kind))
        {
            address = 0;
            return false;
        }

        return _inner.TryMap(length, alignment, kind, out address);
    }

    public override bool Unmap(nint address, nuint length)
    {
        if (RefuseUnmap)
        {
            return false;
        }

        Unmaps++;
        return _inner.Unmap(address, length);
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        Advice.Enqueue(advice);
        BeforeAdvice?.Invoke(address, length, advice);
        return !RefuseAdvice && _inner.TryAdvise(address, length, advice);
    }

    /// <summary>
    /// While set, a lookup of a block's backing array (made as a block's manager is created, there being none for
    /// mapped memory) throws <see cref="OutOfMemoryException"/>, as any call can at the GC heap limit: the manager's
    /// own allocation failing, where a test cannot time the heap's filling that finely.
    /// </summary>
    public bool ManagersRunOutOfMemory { get; set; }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown at the heap limit.")]
    public override bool TryGetBackingArray(nint address, out byte[]? array, out int offset) => ManagersRunOutOfMemory
        ? throw new OutOfMemoryException("ScriptedPageAllocator: a block's manager made while the test has managers run out of managed memory")
        : _inner.TryGetBackingArray(address, out array, out offset);

    public override bool TryProtect(nint address, nuint length, PageProtection protection) =>
        _inner.TryProtect(address, length, protection);
}
