using System;
using System.Buffers;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Zipora.Buffers.Tests;

public sealed class DependencyInjectionTests
{
    [Fact]
    public void AddTieredMemoryPoolRegistersOptionsThePoolAndTheFactory()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool(options => options.MaxBufferSize = 64 * 1024 * 1024);
        using ServiceProvider provider = services.BuildServiceProvider();

        TieredMemoryPool pool = provider.GetRequiredService<TieredMemoryPool>();
        Assert.Same(pool, provider.GetRequiredService<TieredMemoryPool>());
        Assert.Equal(64 * 1024 * 1024, provider.GetRequiredService<IOptions<TieredMemoryPoolOptions>>().Value.MaxBufferSize);
        Assert.Equal(64 * 1024 * 1024, pool.MaxBufferSize);
        Assert.IsType<TieredMemoryPoolFactory>(provider.GetRequiredService<IMemoryPoolFactory<byte>>());
    }

    [Fact]
    public void TheFactorysViewsAdvertiseTheRegisteredPoolsOwnMaxBufferSize()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool(options => options.MaxBufferSize = 1024 * 1024);
        using ServiceProvider provider = services.BuildServiceProvider();
        using MemoryPool<byte> view = provider.GetRequiredService<IMemoryPoolFactory<byte>>().Create(new MemoryPoolOptions { Owner = "kestrel" });

        // Not the shared pool's 1 GiB nor Kestrel's 4 KB: a request the pool would refuse must not look servable.
        Assert.Equal(1024 * 1024, view.MaxBufferSize);
        using IMemoryOwner<byte> largest = view.Rent(view.MaxBufferSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => view.Rent(view.MaxBufferSize + 1));
    }

    [Fact]
    public void TheLastFactoryRegistrationWinsOverAnEarlierOne()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IMemoryPoolFactory<byte>, StandInFactory>();
        services.AddTieredMemoryPool();
        using ServiceProvider provider = services.BuildServiceProvider();
        Assert.IsType<TieredMemoryPoolFactory>(provider.GetRequiredService<IMemoryPoolFactory<byte>>());
    }

    [Fact]
    public void DisposingAFactoryPoolKeepsTheSharedPoolAndLateReturnsWork()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool();
        using ServiceProvider provider = services.BuildServiceProvider();
        IMemoryPoolFactory<byte> factory = provider.GetRequiredService<IMemoryPoolFactory<byte>>();
        TieredMemoryPool shared = provider.GetRequiredService<TieredMemoryPool>();

        MemoryPool<byte> kestrelPool = factory.Create(new MemoryPoolOptions { Owner = "kestrel" });
        Assert.Equal(shared.MaxBufferSize, kestrelPool.MaxBufferSize);
        IMemoryOwner<byte> late = kestrelPool.Rent(4096);
        using (kestrelPool.Rent(20_000))
        {
        }

        kestrelPool.Dispose();
        late.Memory.Span.Fill(1);
        late.Dispose();

        using IMemoryOwner<byte> stillWorks = factory.Create().Rent(100);
        TieredMemoryPoolStatistics statistics = shared.GetStatistics();
        Assert.Equal(2, statistics.RentsByOwner["kestrel"]);
        Assert.Equal(1, statistics.RentsByOwner["unknown"]);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);
    }

    [Fact]
    public void InvalidOptionsFailWhenThePoolIsResolved()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool(options => options.MmapThreshold = 3);
        using ServiceProvider provider = services.BuildServiceProvider();
        var error = Assert.Throws<ArgumentException>(() => provider.GetRequiredService<TieredMemoryPool>());
        Assert.Equal(nameof(TieredMemoryPoolOptions.MmapThreshold), error.ParamName);
    }

    [Fact]
    public void TheDefaultIsPinnedArraysRegisteredOnceWhateverTheNumberOfCalls()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool();
        services.AddTieredMemoryPool();
        using ServiceProvider provider = services.BuildServiceProvider();

        Assert.True(provider.GetRequiredService<IOptions<TieredMemoryPoolOptions>>().Value.UsePinnedArrays);
        Assert.Equal("pinned-arrays", provider.GetRequiredService<TieredMemoryPool>().GetStatistics().Backend);
        Assert.Single(services, static service => service.ImplementationType == typeof(PinnedArraysByDefault));
    }

    [Fact]
    public void AnExplicitUsePinnedArraysWinsOverTheDefaultWhenALaterCallAddsThePoolAgain()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool(options => options.UsePinnedArrays = false);
        services.AddTieredMemoryPool();
        AssertNotPinnedArrays(services);
    }

    [Fact]
    public void OptionsConfiguredBeforeTheCallWinOverItsDefault()
    {
        var services = new ServiceCollection();
        services.Configure<TieredMemoryPoolOptions>(options => options.UsePinnedArrays = false);
        services.AddTieredMemoryPool();
        AssertNotPinnedArrays(services);
    }

    [Fact]
    public void NullServicesThrow() =>
        Assert.Throws<ArgumentNullException>(() => TieredMemoryPoolServiceCollectionExtensions.AddTieredMemoryPool(null!));

    private static void AssertNotPinnedArrays(ServiceCollection services)
    {
        using ServiceProvider provider = services.BuildServiceProvider();
        Assert.False(provider.GetRequiredService<IOptions<TieredMemoryPoolOptions>>().Value.UsePinnedArrays);
        Assert.NotEqual("pinned-arrays", provider.GetRequiredService<TieredMemoryPool>().GetStatistics().Backend);
    }

    private sealed class StandInFactory : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => MemoryPool<byte>.Shared;
    }
}
