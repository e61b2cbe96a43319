using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The OS layer as it is (<see cref="PageAllocator.Default"/>, hugetlb included), counting the page hints it passes on
/// and those the kernel refused: how often the pool asks a kernel that keeps saying no.
/// </summary>
internal sealed class AdviceCountingAllocator : PageAllocator
{
    private readonly PageAllocator _inner = Default;
    private readonly System.Collections.Generic.List<(nint Address, nuint Length)> _ranges = [];
    private long _advised;
    private long _refused;

    public long Advised => Volatile.Read(ref _advised);

    public long Refused => Volatile.Read(ref _refused);

    /// <summary>
    /// The bytes of every piece of advice passed on so far that fall in [<paramref name="start"/>,
    /// <paramref name="start"/> + <paramref name="length"/>): what a trim asked the kernel to drop there, counted
    /// outside the pool.
    /// </summary>
    public long AdvisedBytesWithin(nint start, long length)
    {
        lock (_ranges)
        {
            long bytes = 0;
            foreach ((nint address, nuint advisedLength) in _ranges)
            {
                long from = System.Math.Max((long)address, (long)start);
                long to = System.Math.Min((long)address + (long)advisedLength, (long)start + length);
                bytes += System.Math.Max(0, to - from);
            }

            return bytes;
        }
    }

    public override string Name => _inner.Name;

    public override bool SupportsHugeTlb => _inner.SupportsHugeTlb;

    public override bool SupportsAdvice => _inner.SupportsAdvice;

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address) => _inner.TryMap(length, alignment, kind, out address);

    public override bool Unmap(nint address, nuint length) => _inner.Unmap(address, length);

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        Interlocked.Increment(ref _advised);
        lock (_ranges)
        {
            _ranges.Add((address, length));
        }

        bool taken = _inner.TryAdvise(address, length, advice);
        if (!taken)
        {
            Interlocked.Increment(ref _refused);
        }

        return taken;
    }

    public override bool TryProtect(nint address, nuint length, PageProtection protection) => _inner.TryProtect(address, length, protection);
}
