using System;
using System.Buffers;
using System.Collections.Generic;
using System.Net;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The options bound from an app's configuration (appsettings.json and the like), as a Kestrel app sets them:
/// <c>AddTieredMemoryPool</c>'s remarks promise that a value bound from configuration wins over the one default the
/// call sets (<see cref="TieredMemoryPoolOptions.UsePinnedArrays"/>), and that an invalid value throws
/// <see cref="ArgumentException"/> when the pool is first resolved.
/// </summary>
public sealed class OptionsFromConfigurationTests
{
    [Fact]
    public void EveryKindOfOptionBindsFromConfigurationTextAndReachesThePool()
    {
        using ServiceProvider provider = Provider(new Dictionary<string, string?>
        {
            ["Zipora:Name"] = "from-config",
            ["Zipora:MaxBufferSize"] = "8388608",
            ["Zipora:MaxBytesInUse"] = "6442450944",
            ["Zipora:IdleReleaseDelay"] = "00:00:30",
            ["Zipora:Diagnostics"] = "Sampled",
            ["Zipora:ReuseOwners"] = "true",
            ["Zipora:ThreadCacheMaxBuffers"] = "64",
        });

        TieredMemoryPoolOptions bound = provider.GetRequiredService<IOptions<TieredMemoryPoolOptions>>().Value;
        Assert.Equal(6L * 1024 * 1024 * 1024, bound.MaxBytesInUse);
        Assert.Equal(TimeSpan.FromSeconds(30), bound.IdleReleaseDelay);
        Assert.Equal(DiagnosticLevel.Sampled, bound.Diagnostics);
        Assert.True(bound.ReuseOwners);
        Assert.Equal(64, bound.ThreadCacheMaxBuffers);
        Assert.Same(TimeProvider.System, bound.TimeProvider);

        TieredMemoryPool pool = provider.GetRequiredService<TieredMemoryPool>();
        Assert.Equal("from-config", pool.Name);
        Assert.Equal(8 * 1024 * 1024, pool.MaxBufferSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(8 * 1024 * 1024 + 1));
    }

    [Fact]
    public void UsePinnedArraysFalseFromConfigurationWinsOverTheCallsDefault()
    {
        using ServiceProvider provider = Provider(new Dictionary<string, string?> { ["Zipora:UsePinnedArrays"] = "false" });
        TieredMemoryPool pool = provider.GetRequiredService<TieredMemoryPool>();
        using IMemoryOwner<byte> owner = pool.Rent(4096);
        Assert.False(MemoryMarshal.TryGetArray<byte>(owner.Memory, out _), "configuration said no pinned arrays, yet the buffer is an array's");
    }

    [Fact]
    public void WithNothingInConfigurationThePoolKeepsTheCallsPinnedArrays()
    {
        using ServiceProvider provider = Provider([]);
        TieredMemoryPool pool = provider.GetRequiredService<TieredMemoryPool>();
        using IMemoryOwner<byte> owner = pool.Rent(4096);
        Assert.True(MemoryMarshal.TryGetArray<byte>(owner.Memory, out _), "Kestrel's socket transport needs array-backed buffers");
    }

    [Theory]
    [InlineData("MaxBufferSize", "-1")]
    [InlineData("MaxBytesInUse", "-5")]
    [InlineData("IdleReleaseDelay", "-00:00:01")]
    [InlineData("ThreadCacheMaxBuffers", "-2")]
    public void AnInvalidValueFromConfigurationThrowsAtTheFirstResolveNamingTheOption(string option, string value)
    {
        using ServiceProvider provider = Provider(new Dictionary<string, string?> { ["Zipora:" + option] = value });
        ArgumentException error = Assert.ThrowsAny<ArgumentException>(() => provider.GetRequiredService<TieredMemoryPool>());
        Assert.Contains(option, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AKestrelAppWithAnInvalidValueInItsConfigurationFailsToBuildNamingTheOption()
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Zipora:MaxBufferSize"] = "0" });
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, 0));
        builder.Services.AddTieredMemoryPool();
        builder.Services.Configure<TieredMemoryPoolOptions>(builder.Configuration.GetSection("Zipora"));

        // Building the app resolves Kestrel, whose socket transport takes the pool factory: the operator learns before
        // the server listens, not at the first request.
        ArgumentException error = Assert.ThrowsAny<ArgumentException>(() => builder.Build());
        Assert.Contains("MaxBufferSize", error.Message, StringComparison.Ordinal);
    }

    private static ServiceProvider Provider(Dictionary<string, string?> settings)
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        services.AddTieredMemoryPool();
        services.Configure<TieredMemoryPoolOptions>(configuration.GetSection("Zipora"));
        return services.BuildServiceProvider();
    }
}
