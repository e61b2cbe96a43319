using System;
using System.Collections.Generic;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An aligned map cuts the ends off an over-sized mapping; at <c>vm.max_map_count</c> the kernel refuses the cut, and
/// may refuse giving the mapping back whole too (when it merged the mapping with a neighbour on each side). The rest
/// must not stay mapped with nothing pointing at it: it is kept and unmapped at the allocator's next map or unmap.
/// The kernel's refusals are scripted here; every unmap that is let through is the kernel's.
/// </summary>
public sealed class StrayMappingTests
{
    private const nuint Length = 64 * 1024;

    // Below 2 MB with its padding, so the kernel does not align the padded mapping to a hugepage boundary on its own
    // and the cut has a head as well as a tail.
    private const nuint Alignment = 1024 * 1024;

    [Fact]
    public void AMappingTheKernelRefusesToCutAndToUnmapWholeStaysCountedAndIsUnmappedAtTheNextUnmap()
    {
        Skip.Unless(ProcessMappings.CanRead && OperatingSystem.IsLinux(), "needs Linux's mmap and /proc/self/maps");
        var kernel = new ScriptedMunmap();
        var allocator = new UnixPageAllocator(kernel.Munmap);
        Assert.True(allocator.TryMap(Length, PageAllocator.PageSize, PageKind.Normal, out nint unrelated), "a plain map");

        kernel.RefuseNext = int.MaxValue;
        bool mapped = allocator.TryMap(Length, Alignment, PageKind.Normal, out nint address);
        kernel.RefuseNext = 0;

        Assert.False(mapped, "a map whose cut was refused reports a refusal");
        Assert.Equal(0, address);
        (nint strayStart, nuint strayLength) = kernel.Refused[^1];
        Assert.Equal((long)strayLength, allocator.Strays.Bytes);
        Assert.True(ProcessMappings.IsMapped(strayStart, (long)strayLength), $"the stray should still be mapped: {ProcessMappings.Describe(strayStart, (long)strayLength)}");

        // Unmapping frees a map entry, so the stray is tried again then, by the kernel's own munmap.
        Assert.True(allocator.Unmap(unrelated, Length));
        Assert.Equal(0, allocator.Strays.Bytes);
        Assert.Contains((strayStart, strayLength), kernel.Accepted);
        Assert.Equal(0, allocator.Strays.AbandonedBytes);
    }

    [Fact]
    public void AStrayWhoseTailCutWasRefusedAfterItsHeadWasCutIsTheRestAndGoesAtTheNextMap()
    {
        Skip.Unless(OperatingSystem.IsLinux(), "needs Linux's mmap");
        var kernel = new ScriptedMunmap();
        var allocator = new UnixPageAllocator(kernel.Munmap);

        // The head's cut goes through, every later unmap is refused. A mapping the kernel placed aligned has no head
        // (one in 256 here): its one cut, the tail's, goes through and the map succeeds. It is kept until the end, so
        // the next try lands elsewhere (given back, the hole it leaves is where the kernel would place the next one).
        var placedAligned = new List<nint>();
        for (int attempt = 0; ; attempt++)
        {
            Assert.True(attempt < 16, "the kernel placed 16 padded mappings aligned in a row");
            kernel.AcceptFirst = 1;
            kernel.RefuseNext = int.MaxValue;
            bool mapped = allocator.TryMap(Length, Alignment, PageKind.Normal, out nint aligned);
            kernel.AcceptFirst = 0;
            kernel.RefuseNext = 0;
            if (!mapped)
            {
                break;
            }

            placedAligned.Add(aligned);
            kernel.Accepted.Clear();
            kernel.Refused.Clear();
        }

        (nint cutStart, nuint cutLength) = kernel.Accepted[0];
        (nint strayStart, nuint strayLength) = kernel.Refused[^1];
        nuint padded = Length + Alignment - PageAllocator.PageSize;
        Assert.Equal(padded, cutLength + strayLength);
        Assert.True(strayStart == cutStart + (nint)cutLength || cutStart == strayStart + (nint)strayLength, "the stray is what the cut left");
        Assert.Equal((long)strayLength, allocator.Strays.Bytes);

        // The next map tries the stray first.
        Assert.True(allocator.TryMap(Length, Alignment, PageKind.Normal, out nint next));
        Assert.Equal(0, allocator.Strays.Bytes);
        Assert.Contains((strayStart, strayLength), kernel.Accepted);
        Assert.True(allocator.Unmap(next, Length));
        placedAligned.ForEach(address => Assert.True(allocator.Unmap(address, Length)));
    }

    [Fact]
    public void AGiveBackThatThrowsForWantOfManagedMemoryKeepsTheRangeAsAStray()
    {
        Skip.Unless(ProcessMappings.CanRead && OperatingSystem.IsLinux(), "needs Linux's mmap and /proc/self/maps");
        var kernel = new ScriptedMunmap();
        var allocator = new UnixPageAllocator(kernel.Munmap);

        // The cut is refused, and the call that gives the mapping back whole throws before it runs, as a first call
        // can at the GC heap limit.
        kernel.RefuseNext = 1;
        kernel.ThrowNext = 1;
        Assert.False(allocator.TryMap(Length, Alignment, PageKind.Normal, out _));
        (nint strayStart, nuint strayLength) = kernel.Thrown[0];
        Assert.Equal((long)strayLength, allocator.Strays.Bytes);
        Assert.True(ProcessMappings.IsMapped(strayStart, (long)strayLength), $"the stray should still be mapped: {ProcessMappings.Describe(strayStart, (long)strayLength)}");

        Assert.True(allocator.TryMap(Length, PageAllocator.PageSize, PageKind.Normal, out nint next));
        Assert.Equal(0, allocator.Strays.Bytes);
        Assert.Contains((strayStart, strayLength), kernel.Accepted);
        Assert.True(allocator.Unmap(next, Length));
    }

    [Fact]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown from a call at the heap limit.")]
    public void AStrayRefusedAgainStaysAndOneThatThrowsKeepsItAndTheRest()
    {
        var strays = new StrayMappings();
        strays.Add(0x1000, 4096);
        strays.Add(0x3000, 8192);
        strays.Add(0x7000, 4096);

        strays.TryUnmapAll(static (address, _) => address != 0x3000);
        Assert.Equal(8192, strays.Bytes);

        var tried = new List<nint>();
        strays.Add(0x9000, 4096);
        Assert.Throws<OutOfMemoryException>(() => strays.TryUnmapAll((address, _) =>
        {
            tried.Add(address);
            return address == 0x3000 ? throw new OutOfMemoryException() : true;
        }));
        Assert.Equal(12288, strays.Bytes);

        tried.Clear();
        strays.TryUnmapAll((address, _) =>
        {
            tried.Add(address);
            return true;
        });
        Assert.Equal([0x3000, 0x9000], tried);
        Assert.Equal(0, strays.Bytes);
        Assert.True(strays.IsEmpty);
    }

    [Fact]
    public void StraysBeyondTheRoomAreCountedAsAbandonedNotLost()
    {
        var strays = new StrayMappings();
        for (int i = 0; i < StrayMappings.Capacity + 3; i++)
        {
            strays.Add(0x10000 * (i + 1), 4096);
        }

        Assert.Equal(StrayMappings.Capacity * 4096L, strays.Bytes);
        Assert.Equal(3 * 4096L, strays.AbandonedBytes);
    }

    /// <summary>
    /// The kernel's <c>munmap</c>, which refuses on demand as it does at <c>vm.max_map_count</c>, or throws before it
    /// runs as a first call can at the GC heap limit, and records every call.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown from a call at the heap limit.")]
    private sealed class ScriptedMunmap
    {
        public int AcceptFirst { get; set; }

        public int RefuseNext { get; set; }

        public int ThrowNext { get; set; }

        public List<(nint Address, nuint Length)> Thrown { get; } = [];

        public List<(nint Address, nuint Length)> Accepted { get; } = [];

        public List<(nint Address, nuint Length)> Refused { get; } = [];

        public bool Munmap(nint address, nuint length)
        {
            if (AcceptFirst > 0)
            {
                AcceptFirst--;
            }
            else if (RefuseNext > 0)
            {
                RefuseNext--;
                Refused.Add((address, length));
                return false;
            }
            else if (ThrowNext > 0)
            {
                ThrowNext--;
                Thrown.Add((address, length));
                throw new OutOfMemoryException("the scripted munmap ran out of managed memory before the call");
            }

            bool done = Libc.Munmap(address, length) == 0;
            (done ? Accepted : Refused).Add((address, length));
            return done;
        }
    }
}
