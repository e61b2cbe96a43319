using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A trim under memory pressure of a pool of pinned arrays lets go of the region tiers' arrays (which cannot drop their
/// pages) before it trims the slab tiers: a slab trim may allocate (its tables grow), and at the GC heap limit the
/// collection that allocation sets off must find those arrays unreferenced, or the trim fails with the pool's idle
/// memory still on the heap. Unmapped only after the slab trims (the pressure trim's last step), they came too late
/// for it. The order is what the heap-limit case rests on; here it is read from the allocator's calls.
/// </summary>
public sealed class PressureTrimOrderTests
{
    [Fact]
    public void UnderPressureTheRegionTiersPinnedArraysLeaveBeforeTheSlabTiersAreTrimmed()
    {
        var allocator = new RecordingPinnedArrayAllocator();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, new FakeTimeProvider());
        options.PageAllocator = allocator;
        options.FallbackPageAllocator = null;
        using var pool = new TieredMemoryPool(options);

        IMemoryOwner<byte>[] slabBlocks = [pool.Rent(64), pool.Rent(4096)];
        allocator.LastMapLength = 0;
        IMemoryOwner<byte> region = pool.Rent(100_000);
        nuint regionLength = allocator.LastMapLength;
        region.Dispose();
        foreach (IMemoryOwner<byte> owner in slabBlocks)
        {
            owner.Dispose();
        }

        allocator.Recording = true;
        PoolTrims.Run(pool, underPressure: true);
        allocator.Recording = false;

        (string Call, nuint Length)[] calls = [.. allocator.Calls];
        string seen = string.Join(", ", calls.Select(static call => $"{call.Call} {call.Length}"));
        int regionUnmap = Array.FindIndex(calls, call => call.Call == "unmap" && call.Length == regionLength);
        int firstSlabCall = Array.FindIndex(calls, call => call.Length != regionLength);
        Assert.True(regionUnmap >= 0 && firstSlabCall >= 0, $"the pressure trim did not unmap the {regionLength}-byte region or touch a slab: {seen}");
        Assert.True(regionUnmap < firstSlabCall, $"the region's array was unmapped only after the slab tiers' trims began (calls: {seen})");
    }

    /// <summary>Pinned arrays that record, while asked to, every unmap and hint with its length.</summary>
    private sealed class RecordingPinnedArrayAllocator : PinnedArrayPageAllocator
    {
        public bool Recording { get; set; }

        public nuint LastMapLength { get; set; }

        public ConcurrentQueue<(string Call, nuint Length)> Calls { get; } = new();

        protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
        {
            LastMapLength = length;
            return base.TryMapCore(length, alignment, kind, out address);
        }

        public override bool Unmap(nint address, nuint length)
        {
            if (Recording)
            {
                Calls.Enqueue(("unmap", length));
            }

            return base.Unmap(address, length);
        }

        public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
        {
            if (Recording)
            {
                Calls.Enqueue(("advise", length));
            }

            return base.TryAdvise(address, length, advice);
        }
    }
}
