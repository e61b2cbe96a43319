using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel on the tiered pool stopped while a burst of requests of mixed sizes is in flight: uploads cut mid-body,
/// responses the client does not read, and requests still arriving.
/// </summary>
public sealed class KestrelShutdownUnderLoadTests
{
    private static readonly int[] s_sizes = [1, 100, 4095, 16_385, 65_536, 300_001, 1024 * 1024, 4 * 1024 * 1024];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task StoppingTheAppMidBurstLeavesNothingInUseAndLogsNoPoolError(bool reuseOwners)
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        var logs = new FakeLoggerProvider();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, 0));
        builder.Services.AddTieredMemoryPool(options => options.ReuseOwners = reuseOwners);
        WebApplication app = builder.Build();
        app.MapPost("/echo", async (HttpContext context) =>
        {
            // Every byte received goes back through the response's pipe, on the pool at both ends.
            PipeReader reader = context.Request.BodyReader;
            PipeWriter writer = context.Response.BodyWriter;
            while (true)
            {
                ReadResult result = await reader.ReadAsync(context.RequestAborted);
                foreach (ReadOnlyMemory<byte> segment in result.Buffer)
                {
                    await writer.WriteAsync(segment, context.RequestAborted);
                }

                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        });

        await app.StartAsync(token);
        TieredMemoryPool pool = app.Services.GetRequiredService<TieredMemoryPool>();
        var address = new Uri(app.Urls.Single());
        var inFlight = new List<Task>();
        var sockets = new List<Socket>();
        using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(20) };
        try
        {
            // A burst that completes, checked byte for byte.
            await Parallel.ForAsync(0, 32, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = token }, async (i, t) =>
            {
                byte[] body = RandomNumberGenerator.GetBytes(s_sizes[i % s_sizes.Length]);
                using HttpResponseMessage response = await client.PostAsync("/echo", new ByteArrayContent(body), t);
                byte[] back = await response.Content.ReadAsByteArrayAsync(t);
                Assert.True(body.AsSpan().SequenceEqual(back), $"request {i} of {body.Length} bytes came back wrong");
            });

            // Uploads cut mid-body by a reset.
            for (int i = 0; i < 8; i++)
            {
                using Socket cut = await ConnectAsync(address, token);
                await cut.SendAsync(Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {4 * 1024 * 1024}\r\n\r\n"), SocketFlags.None, token);
                await cut.SendAsync(new byte[s_sizes[i] % (1024 * 1024) + 1], SocketFlags.None, token);
                cut.LingerState = new LingerOption(true, 0);
                cut.Close();
            }

            // Still in flight at the stop: uploads half sent whose echo nobody reads (the server's response pipe fills),
            // and client requests still sending.
            for (int i = 0; i < 8; i++)
            {
                Socket open = await ConnectAsync(address, token);
                sockets.Add(open);
                await open.SendAsync(Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {8 * 1024 * 1024}\r\n\r\n"), SocketFlags.None, token);
                _ = open.SendAsync(new byte[s_sizes[i] + 1024 * 1024], SocketFlags.None, token).AsTask();
            }

            for (int i = 0; i < 16; i++)
            {
                byte[] body = RandomNumberGenerator.GetBytes(s_sizes[i % s_sizes.Length]);
                inFlight.Add(Task.Run(async () =>
                {
                    using HttpResponseMessage response = await client.PostAsync("/echo", new ByteArrayContent(body), token);
                    _ = await response.Content.ReadAsByteArrayAsync(token);
                }, token));
            }

            for (int i = 0; i < 100 && pool.GetStatistics().BytesInUse == 0; i++)
            {
                await Task.Delay(20, token);
            }

            Assert.True(pool.GetStatistics().BytesInUse > 0, "nothing of the pool was in flight at the stop");
        }
        finally
        {
            using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await app.StopAsync(stopping.Token);
        }

        // The requests cut by the stop fail; which do is the race's, not the test's.
        foreach (Task request in inFlight)
        {
            try
            {
                await request;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OperationCanceledException)
            {
            }
        }

        foreach (Socket socket in sockets)
        {
            socket.Dispose();
        }

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        for (int i = 0; i < 200 && after.BytesInUse != 0; i++)
        {
            await Task.Delay(25, token);
            after = pool.GetStatistics();
        }

        Assert.True(after.BytesInUse == 0, after.ToString());
        foreach (TierStatistics tier in new[] { after.Small, after.Medium, after.Large, after.Huge })
        {
            Assert.Equal(tier.Rents, tier.Returns);
        }

        await app.DisposeAsync();
        string poolErrors = string.Join(Environment.NewLine, logs.Collector.GetSnapshot()
            .Where(r => r.Exception is not null && r.Exception.ToString().Replace("Zipora.Buffers.Tests", string.Empty, StringComparison.Ordinal).Contains("Zipora.Buffers", StringComparison.Ordinal))
            .Select(r => $"{r.Level} {r.Category}: {r.Message} {r.Exception}"));
        Assert.True(poolErrors.Length == 0, poolErrors);
    }

    private static async Task<Socket> ConnectAsync(Uri address, CancellationToken token)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, address.Port, token);
        return socket;
    }
}
