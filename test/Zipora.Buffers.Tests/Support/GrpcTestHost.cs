using System;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Threading;
using System.Threading.Tasks;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel on 127.0.0.1, HTTP/2 without TLS, on the tiered pool (<c>AddTieredMemoryPool</c>), serving
/// <see cref="GrpcEchoService"/>; and a <see cref="GrpcChannel"/> to it with the message size limits raised.
/// </summary>
internal sealed class GrpcTestHost : IAsyncDisposable
{
    /// <summary>The largest message either end accepts: the 4 MB payloads and their seed fit.</summary>
    public const int MaxMessageSize = 5 * 1024 * 1024;

    private GrpcTestHost(WebApplication app, GrpcEchoMethods methods, FakeLoggerProvider logs)
    {
        App = app;
        Methods = methods;
        Logs = logs;
        Pool = app.Services.GetRequiredService<TieredMemoryPool>();
        Address = new Uri(app.Urls.Single());
        Channel = CreateChannel();
        Invoker = Channel.CreateCallInvoker();
    }

    public WebApplication App { get; }

    public GrpcEchoMethods Methods { get; }

    public FakeLoggerProvider Logs { get; }

    /// <summary>The server's pool, the one Kestrel rents every connection buffer from.</summary>
    public TieredMemoryPool Pool { get; }

    public Uri Address { get; }

    public GrpcChannel Channel { get; }

    public CallInvoker Invoker { get; }

    /// <summary>A channel of its own to the server (its own connection), the message size limits raised.</summary>
    public GrpcChannel CreateChannel() => GrpcChannel.ForAddress(Address, new GrpcChannelOptions
    {
        MaxReceiveMessageSize = MaxMessageSize,
        MaxSendMessageSize = MaxMessageSize,
        HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
    });

    /// <summary>Starts the server, its pool configured by <paramref name="configure"/>.</summary>
    public static async Task<GrpcTestHost> StartAsync(Action<TieredMemoryPoolOptions> configure, CancellationToken token)
    {
        var logs = new FakeLoggerProvider();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddTieredMemoryPool(configure);
        builder.Services.AddGrpc(options =>
        {
            options.MaxReceiveMessageSize = MaxMessageSize;
            options.MaxSendMessageSize = MaxMessageSize;
            options.EnableDetailedErrors = true;
        });
        var methods = new GrpcEchoMethods(new GrpcPayloadMarshaller());
        builder.Services.AddSingleton(methods);
        builder.Services.AddSingleton<IServiceMethodProvider<GrpcEchoService>, GrpcEchoMethodProvider>();
        WebApplication app = builder.Build();
        app.MapGrpcService<GrpcEchoService>();
        await app.StartAsync(token);
        return new GrpcTestHost(app, methods, logs);
    }

    /// <summary>
    /// Stops the server within <paramref name="grace"/>, then waits (a bounded time) for the pool to be quiet and returns its
    /// statistics then. With <paramref name="collectDroppedBuffers"/>, the wait also runs the GC and its finalizers, for
    /// the buffers a connection that faulted dropped without disposing them.
    /// </summary>
    /// <remarks>
    /// A rent refused at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> faults the HTTP/2 connection it was for,
    /// and Kestrel then drops the blocks of that connection's pipes without disposing them (seen: 68 to 144 blocks of
    /// 4 KB in 2 runs of 8). With Kestrel's own pool the GC takes such arrays unseen; this pool counts them in use until
    /// their owners are finalized, then reclaims them as leaked blocks (<see cref="TieredMemoryPoolStatistics.LeaksReclaimed"/>).
    /// </remarks>
    public async Task<TieredMemoryPoolStatistics> StopAsync(TimeSpan grace, CancellationToken token, bool collectDroppedBuffers = false)
    {
        using (var stopping = new CancellationTokenSource(grace))
        {
            await App.StopAsync(stopping.Token).WaitAsync(TimeSpan.FromSeconds(20), token);
        }

        Channel.Dispose();
        TieredMemoryPoolStatistics after = Pool.GetStatistics();
        for (int i = 0; i < 200 && after.BytesInUse != 0; i++)
        {
            if (collectDroppedBuffers)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            await Task.Delay(25, token);
            after = Pool.GetStatistics();
        }

        return after;
    }

    /// <summary>
    /// What the server logged with an exception that went through the pool's code, other than the refusals of
    /// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> when <paramref name="refusalsExpected"/>.
    /// </summary>
    public string PoolErrors(bool refusalsExpected = false) => string.Join(Environment.NewLine, Logs.Collector.GetSnapshot()
        .Where(r => r.Exception is not null && !(refusalsExpected && IsRefusal(r.Exception)) && r.Exception.ToString().Replace("Zipora.Buffers.Tests", string.Empty, StringComparison.Ordinal).Contains("Zipora.Buffers", StringComparison.Ordinal))
        .Select(r => $"{r.Level} {r.Category}: {r.Message} {r.Exception}"));

    private static bool IsRefusal(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is InsufficientMemoryException)
            {
                return true;
            }
        }

        return false;
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await App.DisposeAsync();
        Logs.Dispose();
    }
}
