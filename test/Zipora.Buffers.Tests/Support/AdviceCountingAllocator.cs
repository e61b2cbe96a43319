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
    private long _advised;
    private long _refused;

    public long Advised => Volatile.Read(ref _advised);

    public long Refused => Volatile.Read(ref _refused);

    public override string Name => _inner.Name;

    public override bool SupportsHugeTlb => _inner.SupportsHugeTlb;

    public override bool SupportsAdvice => _inner.SupportsAdvice;

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address) => _inner.TryMap(length, alignment, kind, out address);

    public override bool Unmap(nint address, nuint length) => _inner.Unmap(address, length);

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        Interlocked.Increment(ref _advised);
        bool taken = _inner.TryAdvise(address, length, advice);
        if (!taken)
        {
            Interlocked.Increment(ref _refused);
        }

        return taken;
    }

    public override bool TryProtect(nint address, nuint length, PageProtection protection) => _inner.TryProtect(address, length, protection);
}
