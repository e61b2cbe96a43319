using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What a disposed service provider leaves of the pool it registered: the pool it made is disposed, buffers and pipes
/// still in flight (Kestrel's, at shutdown) come back to it without throwing and balance its counts, its factory's views
/// refuse to rent with the pool's own <see cref="ObjectDisposedException"/>, and a pool the application handed the
/// container, <see cref="TieredMemoryPool.Shared"/> or its own, is never disposed by it.
/// </summary>
public sealed class ProviderDisposalTests
{
    private static readonly int[] s_sizes = [64, 4_000, 100_000, 3 * 1024 * 1024];

    [Fact]
    public async Task BuffersAndPipesInFlightComeBackAfterTheProviderIsDisposedAndBalanceThePool()
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        ServiceProvider provider = new ServiceCollection().AddTieredMemoryPool().BuildServiceProvider();
        TieredMemoryPool pool = provider.GetRequiredService<TieredMemoryPool>();
        IMemoryPoolFactory<byte> factory = provider.GetRequiredService<IMemoryPoolFactory<byte>>();
        MemoryPool<byte> view = factory.Create(new MemoryPoolOptions { Owner = "kestrel" });
        var rented = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizes)
        {
            rented.Add(view.Rent(size));
        }

        // A connection's pipe holding unread segments at shutdown.
        var pipe = new Pipe(new PipeOptions(pool: view, minimumSegmentSize: 4096, pauseWriterThreshold: 0));
        for (int i = 0; i < 8; i++)
        {
            _ = await pipe.Writer.WriteAsync(new byte[10_000], token);
        }

        await provider.DisposeAsync();

        Assert.True(pool.IsDisposed, "the container made the pool: its dispose must dispose it");
        ObjectDisposedException refused = Assert.Throws<ObjectDisposedException>(() => view.Rent(100));
        Assert.Contains("pool was disposed", refused.Message, StringComparison.Ordinal);
        MemoryPool<byte> late = factory.Create(new MemoryPoolOptions { Owner = "late" });
        _ = Assert.Throws<ObjectDisposedException>(() => late.Rent(100));

        await pipe.Writer.CompleteAsync();
        ReadResult read = await pipe.Reader.ReadAsync(token);
        Assert.Equal(80_000, read.Buffer.Length);
        pipe.Reader.AdvanceTo(read.Buffer.End);
        await pipe.Reader.CompleteAsync();
        rented.ForEach(static owner => owner.Dispose());

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.All((TierStatistics[])[statistics.Small, statistics.Medium, statistics.Large, statistics.Huge], static tier => Assert.Equal(0, tier.BytesInUse));
        Assert.Equal(0, statistics.BytesRetained);
        view.Dispose();
        late.Dispose();
    }

    [Fact]
    public void APoolTheApplicationRegisteredOutlivesTheProvider()
    {
        using var own = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true });
        foreach (TieredMemoryPool registered in (TieredMemoryPool[])[own, TieredMemoryPool.Shared])
        {
            ServiceProvider provider = new ServiceCollection().AddSingleton(registered).AddTieredMemoryPool().BuildServiceProvider();
            Assert.Same(registered, provider.GetRequiredService<TieredMemoryPool>());
            provider.GetRequiredService<IMemoryPoolFactory<byte>>().Create().Rent(100).Dispose();
            provider.Dispose();

            Assert.False(registered.IsDisposed, $"the provider disposed the pool {registered.Name} it did not make");
            registered.Rent(100).Dispose();
        }
    }
}
