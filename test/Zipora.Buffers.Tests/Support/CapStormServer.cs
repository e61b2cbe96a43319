using System;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel on 127.0.0.1 as a hostile operator runs it on the tiered pool: no limit on what its pipes hold (a slow
/// handler or client keeps whole bodies in the pool), an HTTP/1.1 listener and an HTTP/2 one (no TLS), and endpoints
/// whose bodies carry a stream of <see cref="SeededPattern"/> checked at the other end: <c>POST /check/{seed}</c> reads
/// and checks the body as it comes, <c>POST /hold/{seed}</c> holds the whole body in Kestrel's pipe before checking
/// it, <c>GET /bytes/{seed}/{size}</c> sends a stream, <c>/ws</c> echoes WebSocket messages.
/// </summary>
internal sealed class CapStormServer : IAsyncDisposable
{
    private long _corruptions;

    private CapStormServer(WebApplication app, FakeLoggerProvider logs)
    {
        App = app;
        Logs = logs;
        Pool = app.Services.GetRequiredService<TieredMemoryPool>();
        string[] urls = [.. app.Urls];
        Http1 = new Uri(urls[0]);
        Http2 = new Uri(urls[1]);
    }

    public WebApplication App { get; }

    public FakeLoggerProvider Logs { get; }

    /// <summary>The pool Kestrel rents every connection buffer from.</summary>
    public TieredMemoryPool Pool { get; }

    public Uri Http1 { get; }

    public Uri Http2 { get; }

    /// <summary>Bodies (or messages) whose bytes the server found wrong.</summary>
    public long Corruptions => Interlocked.Read(ref _corruptions);

    public static async Task<CapStormServer> StartAsync(Action<TieredMemoryPoolOptions> configure, CancellationToken token)
    {
        var logs = new FakeLoggerProvider();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        builder.WebHost.UseKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http1);
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.Limits.MaxRequestBufferSize = null;
            kestrel.Limits.MaxResponseBufferSize = null;
            kestrel.Limits.MaxRequestBodySize = null;
        });
        builder.Services.AddTieredMemoryPool(configure);
        WebApplication app = builder.Build();
        CapStormServer? server = null;
        app.UseWebSockets();
        app.MapPost("/check/{seed:int}", async (HttpContext context, int seed) =>
            await server!.CheckAsync(context.Request.BodyReader, seed, hold: false, context.RequestAborted));
        app.MapPost("/hold/{seed:int}", async (HttpContext context, int seed) =>
            await server!.CheckAsync(context.Request.BodyReader, seed, hold: true, context.RequestAborted));
        app.MapGet("/bytes/{seed:int}/{size:int}", (HttpContext context, int seed, int size) => SendAsync(context, seed, size));
        app.Map("/ws", async (HttpContext context) =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = 400;
                return;
            }

            using WebSocket socket = await context.WebSockets.AcceptWebSocketAsync();
            await server!.EchoAsync(socket, context.RequestAborted);
        });
        await app.StartAsync(token);
        server = new CapStormServer(app, logs);
        return server;
    }

    private async Task<string> CheckAsync(PipeReader reader, int seed, bool hold, CancellationToken token)
    {
        long position = 0;
        while (true)
        {
            ReadResult result = await reader.ReadAsync(token);
            if (hold && !result.IsCompleted)
            {
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                continue;
            }

            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                if (!SeededPattern.Matches(segment.Span, seed, position))
                {
                    Interlocked.Increment(ref _corruptions);
                    return $"bad at {position}";
                }

                position += segment.Length;
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return $"ok {position}";
            }
        }
    }

    private static async Task SendAsync(HttpContext context, int seed, int size)
    {
        context.Response.ContentLength = size;
        PipeWriter writer = context.Response.BodyWriter;
        var random = new Random(seed);
        for (int position = 0; position < size;)
        {
            int chunk = Math.Min(random.Next(1, 70_000), size - position);
            Memory<byte> memory = writer.GetMemory(chunk);
            SeededPattern.Fill(memory.Span[..chunk], seed, position);
            writer.Advance(chunk);
            position += chunk;
            if (random.Next(4) == 0 || position == size)
            {
                FlushResult flushed = await writer.FlushAsync(context.RequestAborted);
                if (flushed.IsCanceled || flushed.IsCompleted)
                {
                    return;
                }
            }
        }
    }

    // Each message is checked (its first 4 bytes are its seed) and sent back as it came.
    private async Task EchoAsync(WebSocket socket, CancellationToken token)
    {
        byte[] buffer = new byte[4 * 1024 * 1024];
        while (true)
        {
            int length = 0;
            ValueWebSocketReceiveResult received;
            do
            {
                received = await socket.ReceiveAsync(buffer.AsMemory(length), token);
                length += received.Count;
            }
            while (!received.EndOfMessage);

            if (received.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, token);
                return;
            }

            if (length < 4 || !SeededPattern.Matches(buffer.AsSpan(4, length - 4), BitConverter.ToInt32(buffer), 0))
            {
                Interlocked.Increment(ref _corruptions);
            }

            await socket.SendAsync(buffer.AsMemory(0, length), WebSocketMessageType.Binary, endOfMessage: true, token);
        }
    }

    /// <summary>
    /// What the server logged with an exception that went through the pool's code, other than the refusals of
    /// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>.
    /// </summary>
    public string PoolErrors() => string.Join(Environment.NewLine, Logs.Collector.GetSnapshot()
        .Where(r => r.Exception is not null && !IsRefusal(r.Exception) && r.Exception.ToString().Replace("Zipora.Buffers.Tests", string.Empty, StringComparison.Ordinal).Contains("Zipora.Buffers", StringComparison.Ordinal))
        .Select(r => $"{r.Level} {r.Category}: {r.Message} {r.Exception}"));

    /// <summary>How many log records carry a refusal of the cap.</summary>
    public int LoggedRefusals() => Logs.Collector.GetSnapshot().Count(r => IsRefusal(r.Exception));

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
        await App.DisposeAsync();
        Logs.Dispose();
    }
}
