using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent at <c>MaxBytesInUse</c> of a pool of pinned arrays lets go of the arrays waiting out their delay (still counted,
/// their pages cannot be dropped) only when that makes room for it. One that letting go cannot serve is refused with
/// them kept: each let go of is garbage for the GC and a new array for the next rent of its length, which could have
/// taken it back; rents at a cap beside a pool trimming in a loop set off 580 gen2 collections in 2 s so.
/// </summary>
public sealed class PinnedCapLetGoTests
{
    private const int Megabyte = 1024 * 1024;

    [Fact]
    public void ARentThatLettingGoOfTheWaitingArraysCouldNotServeKeepsThemForReuse()
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, new FakeTimeProvider());
        options.MaxBytesInUse = 4L * Megabyte;
        options.EnableHugepages = false;
        using var pool = new TieredMemoryPool(options);

        // The cap full: four 1 MB arrays; one returned and let go of by a trim waits out the delay, counted.
        IMemoryOwner<byte>[] held = [pool.Rent(Megabyte), pool.Rent(Megabyte), pool.Rent(Megabyte)];
        pool.Rent(Megabyte).Dispose();
        pool.Trim();
        Assert.Equal(Megabyte, pool.GetStatistics().BytesAwaitingRelease);

        // 2 MB asked with 3 MB in use: letting go of the waiting 1 MB leaves no room, so it must stay.
        _ = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(2 * Megabyte));
        TieredMemoryPoolStatistics refused = pool.GetStatistics();
        Assert.True(refused.BytesAwaitingRelease == Megabyte, $"a refused rent let go of waiting arrays that could not make its room: {refused.BytesAwaitingRelease} bytes left waiting of {Megabyte}\n{refused}");

        // And the next rent of its length takes it back instead of a new array.
        using IMemoryOwner<byte> again = pool.Rent(Megabyte);
        Assert.Equal(1, pool.GetStatistics().MappingsReused);
        foreach (IMemoryOwner<byte> owner in held)
        {
            owner.Dispose();
        }
    }
}
