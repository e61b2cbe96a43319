using System;
using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>MaxBytesInUse</c> on the pool <c>AddTieredMemoryPool</c> registers, whose pinned arrays cannot have their pages
/// dropped: what a trim lets go of keeps counting until its unmap, a delay later, unless a new mapping of its length
/// takes it back or a rent at the cap lets it go at once.
/// </summary>
public sealed class PinnedCapRefusalTests
{
    private const int Megabyte = 1024 * 1024;
    private const long Cap = 4L * Megabyte;

    [Theory]
    [InlineData(DiagnosticLevel.Off)]
    [InlineData(DiagnosticLevel.All)]
    public void ARentAtTheCapWithNothingRentedLetsGoOfTheCachedArraysAndFitsWithinTheDelay(DiagnosticLevel diagnostics)
    {
        using ServiceProvider services = ServicesWithACappedPool(diagnostics);
        TieredMemoryPool pool = services.GetRequiredService<TieredMemoryPool>();
        ArraySegment<byte>[] stale = RentAndReturnThreeMegabyteBuffers(pool);

        // A 2 MB rent: the trim at the cap lets the cached arrays go. Before, they stayed counted for the whole 10 s
        // delay (no page of theirs can be dropped), and this rent was refused with nothing in use.
        using IMemoryOwner<byte> big = pool.Rent(2 * Megabyte);
        big.Memory.Span.Fill(0x5A);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.BytesInUse >= 2 * Megabyte, statistics.ToString());

        // Only what the rent needed was let go of: the rest waits for a rent of its length to take it back.
        Assert.True(statistics.BytesAwaitingRelease is > 0 and <= Cap - (2 * Megabyte), statistics.ToString());

        // Stale writes into the arrays let go of land in them, which a stale view keeps alive, never in the new buffer.
        foreach (ArraySegment<byte> segment in stale)
        {
            segment.AsSpan().Fill(0xEE);
        }

        Assert.Equal(-1, big.Memory.Span.IndexOfAnyExcept((byte)0x5A));
    }

    [Fact]
    public void ArraysLetGoOfByATrimServeTheNextRentsOfTheirSizeInsteadOfCountingUnusedForADelay()
    {
        using ServiceProvider services = ServicesWithACappedPool(DiagnosticLevel.Off);
        TieredMemoryPool pool = services.GetRequiredService<TieredMemoryPool>();
        RentAndReturnThreeMegabyteBuffers(pool);

        // The trim lets the three cached arrays go; their pages cannot be dropped, so they count until their unmap.
        pool.Trim();
        Assert.Equal(3 * Megabyte, pool.GetStatistics().BytesAwaitingRelease);

        // Three rents of their size, held at once, within the 10 s delay, take them back rather than mapping anew.
        var owners = new IMemoryOwner<byte>[3];
        long mapCalls = pool.GetStatistics().MmapCalls;
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(Megabyte);
            owners[i].Memory.Span[^1] = 1;
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(mapCalls, statistics.MmapCalls);
        Assert.Equal(3, statistics.MappingsReused);
        Assert.Equal(0, statistics.BytesAwaitingRelease);
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        Assert.Equal(statistics.Large.BytesAllocated - statistics.Large.BytesEvicted, pool.GetStatistics().Large.BytesRetained);
    }

    /// <summary>Services with <c>AddTieredMemoryPool</c> (pinned arrays, the default 10 s delay) at the cap.</summary>
    private static ServiceProvider ServicesWithACappedPool(DiagnosticLevel diagnostics) => new ServiceCollection()
        .AddTieredMemoryPool(options =>
        {
            options.MaxBytesInUse = Cap;
            options.EnableHugepages = false;
            options.Diagnostics = diagnostics;
        })
        .BuildServiceProvider();

    /// <summary>Three 1 MB buffers, all returned: cached, nothing in use. Returns their array segments, now stale.</summary>
    private static ArraySegment<byte>[] RentAndReturnThreeMegabyteBuffers(TieredMemoryPool pool)
    {
        var owners = new IMemoryOwner<byte>[3];
        var segments = new ArraySegment<byte>[3];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(Megabyte);
            Assert.True(MemoryMarshal.TryGetArray<byte>(owners[i].Memory, out segments[i]));
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }

        return segments;
    }
}
