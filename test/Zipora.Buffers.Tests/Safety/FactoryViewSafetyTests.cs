using System;
using System.Buffers;
using Microsoft.AspNetCore.Connections;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pools <see cref="TieredMemoryPoolFactory"/> creates (Kestrel's) are views of one shared pool: a disposed view
/// rents nothing, and an owner it rented before can still be returned afterwards, to the shared pool.
/// </summary>
public sealed class FactoryViewSafetyTests
{
    [Fact]
    public void RentingFromADisposedViewThrowsObjectDisposed()
    {
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default);
        MemoryPool<byte> view = new TieredMemoryPoolFactory(pool).Create(new MemoryPoolOptions { Owner = "kestrel" });
        view.Rent(4096).Dispose();
        view.Dispose();

        Assert.Throws<ObjectDisposedException>(() => view.Rent(4096));
        Assert.Throws<ObjectDisposedException>(() => view.Rent());
        using IMemoryOwner<byte> stillServed = pool.Rent(4096);
    }

    [Theory]
    [MemberData(nameof(SafetyCases.SizesInEveryMode), MemberType = typeof(SafetyCases))]
    public void AnOwnerRentedBeforeTheViewWasDisposedCanStillBeReturned(int size, OwnerMode mode)
    {
        using TieredMemoryPool pool = SafetyCases.Pool(mode);
        MemoryPool<byte> view = new TieredMemoryPoolFactory(pool).Create(new MemoryPoolOptions { Owner = "kestrel" });
        IMemoryOwner<byte> owner = view.Rent(size);
        owner.Memory.Span.Fill(7);
        long returnsBefore = Returns(pool.GetStatistics());
        view.Dispose();

        Assert.True(owner.Memory.Span.IndexOfAnyExcept((byte)7) < 0, "a view's dispose touched a buffer still rented through it");
        owner.Dispose();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(returnsBefore + 1, Returns(statistics));
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(1, statistics.RentsByOwner["kestrel"]);
    }

    private static long Returns(TieredMemoryPoolStatistics statistics) =>
        statistics.Small.Returns + statistics.Medium.Returns + statistics.Large.Returns + statistics.Huge.Returns;
}
