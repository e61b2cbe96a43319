using System;
using System.Buffers;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>MaxBytesInUse</c> on the pool <c>AddTieredMemoryPool</c> registers, whose pinned arrays cannot have their pages
/// dropped: what a trim lets go of keeps counting until its unmap, a delay later.
/// </summary>
public sealed class PinnedCapRefusalTests
{
    private const long Cap = 4L * 1024 * 1024;

    [Fact]
    public void ARentRefusedAtTheCapWithNothingRentedNamesTheLetGoArraysAwaitingTheirUnmap()
    {
        TimeSpan delay = TimeSpan.FromMilliseconds(400);
        using ServiceProvider services = ServicesWithACappedPool(delay);
        TieredMemoryPool pool = services.GetRequiredService<TieredMemoryPool>();
        RentAndReturnThreeMegabyteBuffers(pool);

        // A 2 MB rent: the trim at the cap lets the cached arrays go, but they stay counted until their unmap.
        InsufficientMemoryException refused = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(2 * 1024 * 1024));
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
        Assert.Contains("MaxBytesInUse", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("in use or cached", refused.Message, StringComparison.Ordinal);
        Assert.Contains($"{3 * 1024 * 1024} were let go of but could not be dropped", refused.Message, StringComparison.Ordinal);

        // One delay (and the ticks' lateness) later they are unmapped, and the rent fits.
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using IMemoryOwner<byte> big = pool.Rent(2 * 1024 * 1024);
                break;
            }
            catch (InsufficientMemoryException) when (waited.Elapsed < 8 * delay)
            {
                Thread.Sleep(delay / 8);
            }
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void ArraysLetGoOfAtTheCapServeTheNextRentsOfTheirSizeInsteadOfCountingUnusedForADelay()
    {
        using ServiceProvider services = ServicesWithACappedPool(delay: null);
        TieredMemoryPool pool = services.GetRequiredService<TieredMemoryPool>();
        RentAndReturnThreeMegabyteBuffers(pool);

        // The refusal's trim lets the three cached arrays go; their pages cannot be dropped, so they count until their unmap.
        Assert.Throws<InsufficientMemoryException>(() => pool.Rent(2 * 1024 * 1024));

        // Three rents of their size, held at once, within the 10 s delay: before, only the first fitted beside them.
        var owners = new IMemoryOwner<byte>[3];
        long mapCalls = pool.GetStatistics().MmapCalls;
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(1024 * 1024);
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

    /// <summary>Services with <c>AddTieredMemoryPool</c> (pinned arrays) at the cap, with <paramref name="delay"/> as its idle delay (the default for null).</summary>
    private static ServiceProvider ServicesWithACappedPool(TimeSpan? delay) => new ServiceCollection()
        .AddTieredMemoryPool(options =>
        {
            options.MaxBytesInUse = Cap;
            options.IdleReleaseDelay = delay ?? options.IdleReleaseDelay;
            options.EnableHugepages = false;
        })
        .BuildServiceProvider();

    /// <summary>Three 1 MB buffers, all returned: cached, nothing in use.</summary>
    private static void RentAndReturnThreeMegabyteBuffers(TieredMemoryPool pool)
    {
        var owners = new IMemoryOwner<byte>[3];
        for (int i = 0; i < owners.Length; i++)
        {
            owners[i] = pool.Rent(1024 * 1024);
        }

        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Dispose();
        }
    }
}
