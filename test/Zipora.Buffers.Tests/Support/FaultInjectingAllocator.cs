using System;
using System.Collections.Generic;
using System.Linq;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A page allocator over a real one that fails the <c>N</c>th call of one kind once (refused, out of managed memory,
/// or throwing), counts every call of each kind, and keeps the mappings it made: an unmap of a range that is not a
/// whole live mapping, or of one where a live owner still lies, is recorded as a violation.
/// </summary>
internal sealed class FaultInjectingAllocator : PageAllocator
{
    private readonly PageAllocator _inner;
    private readonly object _lock = new();
    private readonly Dictionary<nint, nuint> _live = [];
    private readonly int[] _calls = new int[4];

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown from a call at the heap limit.")]
    private readonly OutOfMemoryException _outOfMemory = new("FaultInjectingAllocator: the injected call ran out of managed memory");

    public FaultInjectingAllocator(PageAllocator inner) => _inner = inner;

    /// <summary>The call to fail, which of its calls (from 1; 0 for none), and how.</summary>
    public (AllocatorCall Call, int N, FaultKind Kind) Fault { get; set; }

    /// <summary>Whether the fault has been injected.</summary>
    public bool Injected { get; private set; }

    /// <summary>The ranges of the owners the test holds live, asked at each unmap.</summary>
    public Func<IReadOnlyList<OwnerRange>>? LiveOwners { get; set; }

    /// <summary>What went wrong at the allocator's level: unmaps of ranges not mapped, or under a live owner.</summary>
    public List<string> Violations { get; } = [];

    public override string Name => _inner.Name;

    public override bool SupportsAdvice => _inner.SupportsAdvice;

    public override bool SupportsHugeTlb => _inner.SupportsHugeTlb;

    public int Calls(AllocatorCall call)
    {
        lock (_lock)
        {
            return _calls[(int)call];
        }
    }

    public (nint Address, nuint Length)[] Live()
    {
        lock (_lock)
        {
            return [.. _live.Select(static pair => (pair.Key, pair.Value))];
        }
    }

    public override bool TryGetBackingArray(nint address, out byte[]? array, out int offset) =>
        _inner.TryGetBackingArray(address, out array, out offset);

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        address = 0;
        if (Fails(AllocatorCall.Map))
        {
            return false;
        }

        if (!_inner.TryMap(length, alignment, kind, out address))
        {
            return false;
        }

        lock (_lock)
        {
            _live.Add(address, length);
        }

        return true;
    }

    public override bool Unmap(nint address, nuint length)
    {
        if (Fails(AllocatorCall.Unmap))
        {
            return false;
        }

        lock (_lock)
        {
            if (!_live.TryGetValue(address, out nuint mapped) || mapped != length)
            {
                Violations.Add($"unmap of 0x{address:x} ({length} bytes), not a whole live mapping");
                return false;
            }

            var unmapped = new OwnerRange(address, (int)length);
            foreach (OwnerRange owner in LiveOwners?.Invoke() ?? [])
            {
                if (owner.Overlaps(unmapped))
                {
                    Violations.Add($"unmap of {unmapped} under the live owner {owner}");
                    return false;
                }
            }

            _live.Remove(address);
        }

        return _inner.Unmap(address, length);
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice) =>
        !Fails(AllocatorCall.Advise) && _inner.TryAdvise(address, length, advice);

    public override bool TryProtect(nint address, nuint length, PageProtection protection) =>
        !Fails(AllocatorCall.Protect) && _inner.TryProtect(address, length, protection);

    /// <summary>Counts a call; true when it is the one to refuse; throws when it is the one to throw.</summary>
    private bool Fails(AllocatorCall call)
    {
        bool fails;
        lock (_lock)
        {
            int n = ++_calls[(int)call];
            fails = Fault.Call == call && Fault.N == n;
        }

        if (!fails)
        {
            return false;
        }

        Injected = true;
        return Fault.Kind switch
        {
            FaultKind.OutOfMemory => throw _outOfMemory,
            FaultKind.Throw => throw new InjectedFaultException($"injected fault at {call} #{Fault.N}"),
            _ => true,
        };
    }
}
