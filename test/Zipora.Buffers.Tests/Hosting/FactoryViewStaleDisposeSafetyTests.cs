using System.Buffers;
using System.Collections.Generic;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The views <see cref="TieredMemoryPoolFactory"/> hands Kestrel give an owner per rent even with
/// <see cref="TieredMemoryPoolOptions.ReuseOwners"/>: Kestrel's HTTP/1.1 output files its current segment as completed
/// before it rents the next, so a refused rent (a cap, or the OS out of memory) leaves one owner in two places and it is
/// disposed twice (<see cref="KestrelAtTheCapTests"/>). With the pooled block handed out as its own owner, that stale
/// second dispose returned whatever connection had rented the block since: one block, two owners, one client's bytes
/// in another's response.
/// </summary>
public sealed class FactoryViewStaleDisposeSafetyTests
{
    private const int Probes = 64;

    public static TheoryData<int, bool> TiersWithAndWithoutPinnedArrays
    {
        get
        {
            var data = new TheoryData<int, bool>();
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                data.Add(size, true);
                data.Add(size, false);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(TiersWithAndWithoutPinnedArrays))]
    public void AStaleDisposeThroughAViewAfterTheBlockWasRentedAgainReturnsNothing(int size, bool pinnedArrays)
    {
        using ServiceProvider provider = Provider(pinnedArrays);
        using MemoryPool<byte> view = provider.GetRequiredService<IMemoryPoolFactory<byte>>().Create(new MemoryPoolOptions { Owner = "kestrel" });

        IMemoryOwner<byte> filedTwice = view.Rent(size);
        OwnerRange block = SafetyCases.RangeOf(filedTwice);
        filedTwice.Dispose();

        var renters = new List<IMemoryOwner<byte>>();
        IMemoryOwner<byte>? next = RentedAgain.Find(view, size, block, renters, Probes);
        Assert.True(next is not null, $"the block {block} was not rented again in {Probes} rents");
        SafetyCases.Stamp(next, 47, "the block's next renter");

        filedTwice.Dispose();
        IMemoryOwner<byte> third = view.Rent(size);
        renters.Add(third);
        Assert.False(
            SafetyCases.RangeOf(third).Overlaps(block),
            $"the stale dispose returned the block {block} its next renter holds, and the next rent got it too");
        Assert.True(SafetyCases.HasStamp(next, 47, "the block's next renter"), "the block's next renter's data changed");
        renters.ForEach(static renter => renter.Dispose());
    }

    [Fact]
    public void ThePoolItselfStillHandsOutItsBlocksAsOwnersWithReuseOwners()
    {
        using ServiceProvider provider = Provider(pinnedArrays: true);
        TieredMemoryPool pool = provider.GetRequiredService<TieredMemoryPool>();
        using MemoryPool<byte> view = provider.GetRequiredService<IMemoryPoolFactory<byte>>().Create(new MemoryPoolOptions { Owner = "kestrel" });

        // The option still holds for the app's own rents (its pipes, its code): the same object comes back.
        IMemoryOwner<byte> first = pool.Rent(4096);
        first.Dispose();
        IMemoryOwner<byte> second = pool.Rent(4096);
        Assert.Same(first, second);
        second.Dispose();

        IMemoryOwner<byte> viewed = view.Rent(4096);
        viewed.Dispose();
        IMemoryOwner<byte> viewedAgain = view.Rent(4096);
        Assert.NotSame(viewed, viewedAgain);
        viewedAgain.Dispose();
    }

    private static ServiceProvider Provider(bool pinnedArrays)
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool(options =>
        {
            options.ReuseOwners = true;
            options.UsePinnedArrays = pinnedArrays;
            options.TimeProvider = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        });
        return services.BuildServiceProvider();
    }
}
