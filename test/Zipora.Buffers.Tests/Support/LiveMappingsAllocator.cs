using System;
using System.Linq;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The OS layer, keeping a list of the mappings it made and has not unmapped: what is mapped seen from outside the
/// pool, not through its counters. The list is made up front and a map or unmap allocates nothing, so it serves tests
/// at the GC heap limit.
/// </summary>
internal sealed class LiveMappingsAllocator : PageAllocator
{
    private readonly PageAllocator _inner = Default;
    // A monitor, not a Lock: a contended Lock allocates, and this must not at the heap limit.
    private readonly object _lock = new();
    private readonly nint[] _addresses;
    private readonly nuint[] _lengths;
    private readonly long[] _mappedAt;
    private readonly int[] _tags;
    private long _maps;

    public LiveMappingsAllocator(int mostLive = 65_536)
    {
        _addresses = new nint[mostLive];
        _lengths = new nuint[mostLive];
        _mappedAt = new long[mostLive];
        _tags = new int[mostLive];
    }

    // Made with the allocator, where there is room: at the heap limit a new exception could not be, and nor could a
    // static one made at its first use (its type initializer would fail for good, as it did in CI).
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown from a call at the heap limit.")]
    private readonly OutOfMemoryException _outOfMemory = new("LiveMappingsAllocator: a call made while the test has every call run out of managed memory");

    /// <summary>
    /// While set, unmaps, advice and protection throw <see cref="OutOfMemoryException"/> before doing anything, as any
    /// call can when the process is at its GC heap limit (the runtime allocates at a method's first calls and at its
    /// tiering steps): what the pool does with a mapping whose unmap never happened.
    /// </summary>
    public bool CallsRunOutOfMemory { get; set; }

    /// <summary>The options of a safety pool in <paramref name="mode"/> on <paramref name="time"/>, mapping through this allocator.</summary>
    public TieredMemoryPoolOptions PoolOptions(OwnerMode mode, TimeProvider time)
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.PageAllocator = this;
        return options;
    }

    /// <summary>Runs after each mapping is made and listed, before the pool sees it (a test disposes the pool there, say).</summary>
    public Action? AfterMap { get; set; }

    /// <summary>Runs before each piece of advice reaches the OS (a test holds a release there, halfway out of the pool).</summary>
    public Action<PageAdvice>? BeforeAdvise { get; set; }

    /// <summary>
    /// Runs before each piece of advice reaches the OS, given its length: <see langword="false"/> refuses it, as the OS
    /// refuses to drop locked pages (a test holds a release there, then has it free nothing).
    /// </summary>
    public Func<nuint, bool>? AdviseOrRefuse { get; set; }

    /// <summary>Runs before each change of protection reaches the OS (a test throws there, as a faulty custom allocator would).</summary>
    public Action? BeforeProtect { get; set; }

    /// <summary>Runs before each unmap reaches the OS (a test throws there, as a faulty custom allocator would).</summary>
    public Action? BeforeUnmap { get; set; }

    /// <summary>Runs after each unmap has reached the OS and left the list, given its address (a test holds a release there, its range free for new mappings).</summary>
    public Action<nint>? AfterUnmap { get; set; }

    /// <summary>A number the test sets (its round, say), recorded with each mapping made while it is set.</summary>
    public int Tag { get; set; }

    public override string Name => _inner.Name;

    public override bool SupportsAdvice => _inner.SupportsAdvice;

    /// <summary>Mappings made and not unmapped, as (address, length, which map of this allocator made it counting from 1, the tag then).</summary>
    public (nint Address, nuint Length, long MappedAt, int Tag)[] Live()
    {
        lock (_lock)
        {
            var live = new System.Collections.Generic.List<(nint, nuint, long, int)>();
            for (int i = 0; i < _addresses.Length; i++)
            {
                if (_addresses[i] != 0)
                {
                    live.Add((_addresses[i], _lengths[i], _mappedAt[i], _tags[i]));
                }
            }

            return [.. live];
        }
    }

    /// <summary>The bytes one block of <paramref name="size"/> maps on its own (its slab or region), in a pool of its own.</summary>
    public static long MappedBytesOfOne(int size)
    {
        var allocator = new LiveMappingsAllocator(mostLive: 64);
        using var pool = new TieredMemoryPool(allocator.PoolOptions(OwnerMode.Default, new Microsoft.Extensions.Time.Testing.FakeTimeProvider()));
        using System.Buffers.IMemoryOwner<byte> owner = pool.Rent(size);
        return allocator.Live().Sum(static mapping => (long)mapping.Length);
    }

    /// <summary>Fails the test, naming each mapping, unless every mapping made was unmapped; <paramref name="what"/> says after what.</summary>
    public void AssertNoneLive(string what)
    {
        (nint Address, nuint Length, long MappedAt, int Tag)[] live = Live();
        Assert.True(live.Length == 0, $"{what}: {live.Length} mappings still mapped: {string.Join(", ", live.Select(static m => $"0x{m.Address:x} ({m.Length} bytes, map {m.MappedAt})"))}");
    }

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        if (!_inner.TryMap(length, alignment, kind, out address))
        {
            return false;
        }

        lock (_lock)
        {
            int free = System.Array.IndexOf(_addresses, 0);
            if (free < 0)
            {
                Assert.Fail("more mappings live than the list holds");
            }

            _addresses[free] = address;
            _lengths[free] = length;
            _mappedAt[free] = Interlocked.Increment(ref _maps);
            _tags[free] = Tag;
        }

        AfterMap?.Invoke();
        return true;
    }

    public override bool Unmap(nint address, nuint length)
    {
        ThrowIfOutOfMemory();
        BeforeUnmap?.Invoke();
        if (!_inner.Unmap(address, length))
        {
            return false;
        }

        lock (_lock)
        {
            int at = System.Array.IndexOf(_addresses, address);
            if (at < 0 || _lengths[at] != length)
            {
                // The message is made only here: the check runs at the heap limit, where making it would throw.
                Assert.Fail($"unmapped 0x{address:x} ({length} bytes), which is not a whole mapping of this allocator");
            }

            _addresses[at] = 0;
        }

        AfterUnmap?.Invoke(address);
        return true;
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        ThrowIfOutOfMemory();
        BeforeAdvise?.Invoke(advice);
        return (AdviseOrRefuse?.Invoke(length) ?? true) && _inner.TryAdvise(address, length, advice);
    }

    public override bool TryProtect(nint address, nuint length, PageProtection protection)
    {
        ThrowIfOutOfMemory();
        BeforeProtect?.Invoke();
        return _inner.TryProtect(address, length, protection);
    }

    private void ThrowIfOutOfMemory()
    {
        if (CallsRunOutOfMemory)
        {
            throw _outOfMemory;
        }
    }
}
