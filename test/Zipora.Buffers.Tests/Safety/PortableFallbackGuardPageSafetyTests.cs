using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// In diagnostic mode large and huge buffers get guard pages (<c>mprotect(PROT_NONE)</c>). When the OS refuses the
/// mapping, the region falls back to the portable allocator (<c>aligned_alloc</c>, the C heap), but the guard pages
/// are still set, through the main allocator, on the heap chunk. The C heap owns that memory: its <c>free</c> writes
/// its bookkeeping into the first bytes of the chunk (and the next chunk's header sits at its end), and it hands the
/// pages to other code later. A heap chunk with inaccessible pages crashes the process when the pool frees it.
/// </summary>
/// <remarks>Reads /proc/self/maps; it never frees the chunk (that would crash the test host). Runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class PortableFallbackGuardPageSafetyTests
{
    [Theory]
    [InlineData(100_000)]
    [InlineData(3_000_000)]
    public void MemoryFromTheCHeapFallbackIsNeverMadeInaccessible(int size)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var refusing = new ScriptedPageAllocator { RefuseMap = static (_, _) => true };
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            PageAllocator = refusing,
            Diagnostics = DiagnosticLevel.All,
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = SafetyCases.IdleDelay,
        });

        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange range = SafetyCases.RangeOf(owner);
        Assert.True(pool.GetStatistics().FallbackAllocations > 0, "the OS refused the map, so the region should come from the portable fallback");
        nint page = Environment.SystemPageSize;
        nint before = (range.Start & ~(page - 1)) - page;
        nint after = (range.Start + range.Length + page - 1) & ~(page - 1);
        bool beforeWritable = ProcessMappings.IsWritable(before, page);
        bool afterWritable = ProcessMappings.IsWritable(after, page);
        if (!beforeWritable || !afterWritable)
        {
            // Keep the pool and the chunk forever: freeing it would crash this process.
            s_neverFreed.Add((pool, owner));
        }
        else
        {
            owner.Dispose();
            pool.Dispose();
        }

        Assert.True(
            beforeWritable && afterWritable,
            $"the pool made pages of a C heap chunk inaccessible (guard pages on a portable fallback region): before the buffer "
            + $"{ProcessMappings.Describe(before, page)}, after it {ProcessMappings.Describe(after, page)}; free() of that chunk, "
            + "when the pool lets the region go, writes into them and crashes the process");
    }

    private static readonly System.Collections.Generic.List<(TieredMemoryPool Pool, IMemoryOwner<byte> Owner)> s_neverFreed = [];
}
