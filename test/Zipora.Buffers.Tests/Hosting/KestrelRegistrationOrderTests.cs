using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <c>WebHost.UseKestrel()</c> and <c>UseKestrelCore()</c> register Kestrel's own pool factory again, and the last
/// registration is the one Kestrel resolves: called after <c>AddTieredMemoryPool</c>, Kestrel ran on its own pool with
/// none of the application's caps, idle release or statistics, and nothing said so. The host now fails to start,
/// saying what replaced the registration and what to do; calls that register no factory leave the pool in place.
/// </summary>
public sealed class KestrelRegistrationOrderTests
{
    public static TheoryData<string> CallsThatRegisterKestrelsFactory => ["UseKestrel()", "UseKestrel(options)", "UseKestrelCore()"];

    public static TheoryData<string> CallsThatRegisterNoFactory => ["ConfigureKestrel(options)", "UseKestrelHttpsConfiguration()", "UseQuic()", "UseSockets()"];

    [Theory]
    [MemberData(nameof(CallsThatRegisterKestrelsFactory))]
    public async Task AKestrelFactoryRegisteredAfterTheCallFailsTheHostsStartSayingWhatToDo(string call)
    {
        WebApplicationBuilder builder = Builder();
        builder.Services.AddTieredMemoryPool();
        Call(builder.WebHost, call);
        await using WebApplication app = builder.Build();

        OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync(TestContext.Current.CancellationToken));
        Assert.Contains("a later registration replaces it (a factory method)", error.Message, StringComparison.Ordinal);
        Assert.Contains("call AddTieredMemoryPool after them", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(CallsThatRegisterNoFactory))]
    public async Task KestrelCallsThatRegisterNoFactoryAfterTheCallLeaveKestrelOnThePool(string call)
    {
        WebApplicationBuilder builder = Builder();
        builder.Services.AddTieredMemoryPool();
        Call(builder.WebHost, call);
        await AssertServedFromThePool(builder);
    }

    [Theory]
    [MemberData(nameof(CallsThatRegisterKestrelsFactory))]
    public async Task TheCallAfterKestrelsRegistrationPutsKestrelOnThePool(string call)
    {
        WebApplicationBuilder builder = Builder();
        Call(builder.WebHost, call);
        builder.Services.AddTieredMemoryPool();
        await AssertServedFromThePool(builder);
    }

    [Fact]
    public void OutsideAHostAFactoryRegisteredLaterFailsThePoolsFirstResolveNamingIt()
    {
        var services = new ServiceCollection();
        services.AddTieredMemoryPool();
        services.AddSingleton<IMemoryPoolFactory<byte>, SharedPoolFactory>();
        using ServiceProvider provider = services.BuildServiceProvider();

        OptionsValidationException error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<TieredMemoryPool>());
        Assert.Contains(typeof(SharedPoolFactory).FullName!, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheCallMadeTwiceBesideKeyedFactoriesKeepsThePoolAsTheFactory()
    {
        var services = new ServiceCollection();
        services.AddKeyedSingleton<IMemoryPoolFactory<byte>, SharedPoolFactory>("before");
        services.AddTieredMemoryPool();
        services.AddTieredMemoryPool(options => options.ReuseOwners = true);
        services.AddKeyedSingleton<IMemoryPoolFactory<byte>, SharedPoolFactory>("other");
        using ServiceProvider provider = services.BuildServiceProvider();

        Assert.IsType<TieredMemoryPoolFactory>(provider.GetRequiredService<IMemoryPoolFactory<byte>>());
        Assert.True(provider.GetRequiredService<IOptions<TieredMemoryPoolOptions>>().Value.ReuseOwners);
        Assert.Single(services, static service => service.ImplementationInstance is IValidateOptions<TieredMemoryPoolOptions>);
    }

    private static WebApplicationBuilder Builder()
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(options => options.Listen(IPAddress.Loopback, 0));
        return builder;
    }

    private static void Call(IWebHostBuilder web, string call)
    {
        _ = call switch
        {
            "UseKestrel()" => web.UseKestrel(),
            "UseKestrel(options)" => web.UseKestrel(static options => options.AddServerHeader = false),
            "UseKestrelCore()" => web.UseKestrelCore(),
            "ConfigureKestrel(options)" => web.ConfigureKestrel(static options => options.AddServerHeader = false),
            "UseKestrelHttpsConfiguration()" => web.UseKestrelHttpsConfiguration(),
            "UseQuic()" => web.UseQuic(),
            "UseSockets()" => web.UseSockets(),
            _ => throw new ArgumentOutOfRangeException(nameof(call), call, "not a call this test knows"),
        };
    }

    /// <summary>Starts the app, serves one request, and checks that Kestrel's connection rented from the tiered pool.</summary>
    private static async Task AssertServedFromThePool(WebApplicationBuilder builder)
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        await using WebApplication app = builder.Build();
        app.MapGet("/", static () => "served");
        await app.StartAsync(token);
        try
        {
            Assert.IsType<TieredMemoryPoolFactory>(app.Services.GetRequiredService<IMemoryPoolFactory<byte>>());
            using var client = new HttpClient();
            Assert.Equal("served", await client.GetStringAsync(new Uri(app.Urls.Single()), token));
            IReadOnlyDictionary<string, long> rents = app.Services.GetRequiredService<TieredMemoryPool>().GetStatistics().RentsByOwner;
            Assert.True(rents.GetValueOrDefault("kestrel") > 0, $"Kestrel rented nothing from the tiered pool: {string.Join(", ", rents)}");
        }
        finally
        {
            await app.StopAsync(token);
        }
    }

    private sealed class SharedPoolFactory : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => MemoryPool<byte>.Shared;
    }
}
