using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Pinned arrays a trim let go of count against <c>MaxBytesInUse</c> until their unmap (PinnedCapRefusalTests); a
/// release under memory pressure unmaps them at once, so the cap they held is free again for a rent of another size.
/// </summary>
public sealed class PinnedCapAfterPressureReleaseTests
{
    private const int Megabyte = 1024 * 1024;

    [Fact]
    public void APressureReleaseFreesTheCapPinnedArraysLetGoOfHeld()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            UsePinnedArrays = true,
            MaxBytesInUse = 4 * Megabyte,
            EnableHugepages = false,
            TimeProvider = new FakeTimeProvider(),
        });
        IMemoryOwner<byte>[] owners = [pool.Rent(Megabyte), pool.Rent(Megabyte), pool.Rent(Megabyte)];
        foreach (IMemoryOwner<byte> owner in owners)
        {
            owner.Memory.Span.Fill(1);
            owner.Dispose();
        }

        // A trim lets the arrays go within the delay, and they count until their unmap.
        pool.Trim();
        Assert.Equal(3 * Megabyte, pool.GetStatistics().BytesAwaitingRelease);

        ((IReclaimablePool)pool).TrimUnderPressure();
        Assert.Equal(0, pool.GetStatistics().BytesAwaitingRelease);
        using IMemoryOwner<byte> other = pool.Rent(3 * Megabyte);
        Assert.Equal(3 * Megabyte, other.Memory.Length);
        Assert.Equal(3 * Megabyte, pool.GetStatistics().BytesInUse);
    }
}
