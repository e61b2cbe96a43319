using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// The pool's only door to the OS layer: maps and unmaps through a <see cref="PageAllocator"/>, falls back to the
/// portable allocator when the OS refuses, and counts every call for the statistics.
/// </summary>
internal sealed class PageSource
{
    private readonly PageAllocator _allocator;
    private readonly PageAllocator? _fallback;
    private long _mapCalls;
    private long _unmapCalls;
    private long _hugepageBytes;
    private long _fallbacks;

    /// <param name="allocator">The OS layer.</param>
    /// <param name="fallback">Where base pages come from when <paramref name="allocator"/> refuses; <see langword="null"/> for none.</param>
    public PageSource(PageAllocator allocator, PageAllocator? fallback)
    {
        _allocator = allocator;
        _fallback = ReferenceEquals(allocator, fallback) ? null : fallback;
    }

    public PageAllocator Allocator => _allocator;

    public long MapCalls => Volatile.Read(ref _mapCalls);

    public long UnmapCalls => Volatile.Read(ref _unmapCalls);

    public long HugepageBytes => Volatile.Read(ref _hugepageBytes);

    public long Fallbacks => Volatile.Read(ref _fallbacks);

    /// <summary>Maps base pages; when the OS refuses, falls back to the portable allocator (counted).</summary>
    public bool TryMapPlain(nuint length, nuint alignment, out nint address, out PageBacking backing)
    {
        if (TryMap(length, alignment, PageKind.Normal, out address))
        {
            backing = PageBacking.Plain;
            return true;
        }

        backing = PageBacking.Portable;
        if (_fallback is null)
        {
            return false;
        }

        CountFallback();
        Interlocked.Increment(ref _mapCalls);
        return _fallback.TryMap(length, alignment, PageKind.Normal, out address);
    }

    /// <summary>Maps pages of the given kind with no fallback (the caller decides what comes next).</summary>
    public bool TryMap(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        Interlocked.Increment(ref _mapCalls);
        return _allocator.TryMap(length, alignment, kind, out address);
    }

    public bool TryAdvise(nint address, nuint length, PageAdvice advice) => _allocator.TryAdvise(address, length, advice);

    /// <summary>Unmaps a region with the allocator that mapped it.</summary>
    public void Unmap(nint address, nuint length, PageBacking backing)
    {
        Interlocked.Increment(ref _unmapCalls);
        PageAllocator owner = backing == PageBacking.Portable ? _fallback! : _allocator;
        _ = owner.Unmap(address, length);
        if (IsHuge(backing))
        {
            Interlocked.Add(ref _hugepageBytes, -(long)length);
        }
    }

    /// <summary>Records that a region of this backing now exists (for <see cref="HugepageBytes"/>).</summary>
    public void RecordMapped(nuint length, PageBacking backing)
    {
        if (IsHuge(backing))
        {
            Interlocked.Add(ref _hugepageBytes, (long)length);
        }
    }

    public void CountFallback() => Interlocked.Increment(ref _fallbacks);

    /// <summary>Rounds <paramref name="length"/> up to a multiple of <paramref name="unit"/>, a power of two.</summary>
    public static nuint RoundUp(nuint length, nuint unit) => (length + unit - 1) & ~(unit - 1);

    private static bool IsHuge(PageBacking backing) =>
        backing is PageBacking.TransparentHuge or PageBacking.HugeTlb2MB or PageBacking.HugeTlb1GB;
}
