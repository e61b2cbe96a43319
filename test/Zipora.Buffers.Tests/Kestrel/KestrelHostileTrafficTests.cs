using System;
using System.Collections.Generic;
using System.IO;
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

/// <summary>A hostile client against Kestrel on the tiered pool: big, chunked, aborted and many parallel requests.</summary>
public sealed class KestrelHostileTrafficTests
{
    private const int TenMegabytes = 10 * 1024 * 1024;

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public async Task BigChunkedAbortedAndParallelRequestsLeaveNothingInUseAndLogNoPoolError(bool reuseOwners, bool pinnedArrays)
    {
        var logs = new FakeLoggerProvider();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, 0));
        builder.Services.AddTieredMemoryPool(options =>
        {
            options.ReuseOwners = reuseOwners;
            options.UsePinnedArrays = pinnedArrays;
        });
        WebApplication app = builder.Build();
        app.MapPost("/sha", async (HttpContext context) =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long length = 0;
            PipeReader reader = context.Request.BodyReader;
            while (true)
            {
                ReadResult result = await reader.ReadAsync(context.RequestAborted);
                foreach (ReadOnlyMemory<byte> segment in result.Buffer)
                {
                    hash.AppendData(segment.Span);
                    length += segment.Length;
                }

                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            return $"{Convert.ToHexStringLower(hash.GetHashAndReset())} {length}";
        });
        app.MapPost("/hold", async (HttpContext context) =>
        {
            // Reads the body and consumes none of it: everything received stays in the pool's blocks until the request ends.
            PipeReader reader = context.Request.BodyReader;
            long received = 0;
            while (true)
            {
                ReadResult result = await reader.ReadAsync(context.RequestAborted);
                received = result.Buffer.Length;
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            return $"{received}";
        });
        app.MapGet("/bytes/{size:int}", async (HttpContext context, int size) =>
        {
            PipeWriter writer = context.Response.BodyWriter;
            for (int position = 0; position < size;)
            {
                int chunk = Math.Min(20_000, size - position);
                Memory<byte> memory = writer.GetMemory(chunk);
                for (int i = 0; i < chunk; i++)
                {
                    memory.Span[i] = (byte)(position + i);
                }

                writer.Advance(chunk);
                position += chunk;
                FlushResult flushed = await writer.FlushAsync(context.RequestAborted);
                if (flushed.IsCanceled || flushed.IsCompleted)
                {
                    break;
                }
            }
        });

        await app.StartAsync(TestContext.Current.CancellationToken);
        TieredMemoryPool pool = app.Services.GetRequiredService<TieredMemoryPool>();
        var address = new Uri(app.Urls.Single());
        try
        {
            using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };

            // 10 MB with a length, and 10 MB chunked.
            byte[] upload = RandomNumberGenerator.GetBytes(TenMegabytes);
            string expected = $"{Convert.ToHexStringLower(SHA256.HashData(upload))} {upload.Length}";
            using (HttpResponseMessage sized = await client.PostAsync("/sha", new ByteArrayContent(upload), TestContext.Current.CancellationToken))
            {
                Assert.Equal(expected, await sized.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
            }

            using (var chunked = new HttpRequestMessage(HttpMethod.Post, "/sha") { Content = new StreamContent(new MemoryStream(upload), 7777) })
            {
                chunked.Headers.TransferEncodingChunked = true;
                using HttpResponseMessage response = await client.SendAsync(chunked, TestContext.Current.CancellationToken);
                Assert.Equal(expected, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
            }

            // 64 parallel requests, uploads and downloads mixed.
            await Parallel.ForAsync(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 64, CancellationToken = TestContext.Current.CancellationToken }, async (i, token) =>
            {
                if (i % 2 == 0)
                {
                    byte[] body = new byte[(i + 1) * 10_007];
                    Random.Shared.NextBytes(body);
                    using HttpResponseMessage r = await client.PostAsync("/sha", new ByteArrayContent(body), token);
                    Assert.Equal($"{Convert.ToHexStringLower(SHA256.HashData(body))} {body.Length}", await r.Content.ReadAsStringAsync(token));
                }
                else
                {
                    int size = (i + 1) * 13_001;
                    byte[] got = await client.GetByteArrayAsync($"/bytes/{size}", token);
                    Assert.Equal(size, got.Length);
                    for (int k = 0; k < size; k++)
                    {
                        if (got[k] != (byte)k)
                        {
                            Assert.Fail($"request {i}: wrong byte at {k}");
                        }
                    }
                }
            });

            // Aborted connections: uploads cut mid-body (reset), downloads cut mid-body.
            for (int i = 0; i < 16; i++)
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, address.Port, TestContext.Current.CancellationToken);
                string request = i % 2 == 0
                    ? $"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: {TenMegabytes}\r\n\r\n"
                    : $"GET /bytes/{TenMegabytes} HTTP/1.1\r\nHost: x\r\n\r\n";
                await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None, TestContext.Current.CancellationToken);
                if (i % 2 == 0)
                {
                    await socket.SendAsync(new byte[1024 * 1024 + i], SocketFlags.None, TestContext.Current.CancellationToken);
                }
                else
                {
                    byte[] some = new byte[64 * 1024];
                    await socket.ReceiveAsync(some, SocketFlags.None, TestContext.Current.CancellationToken);
                }

                socket.LingerState = new LingerOption(true, 0);
                socket.Close();
            }

            // And a live connection that is still mid-upload when the server stops, its bytes held by the handler: one
            // that consumed them could have given every block back by then (Kestrel holds none while it waits for data).
            using var hanging = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await hanging.ConnectAsync(IPAddress.Loopback, address.Port, TestContext.Current.CancellationToken);
            await hanging.SendAsync(Encoding.ASCII.GetBytes($"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: {TenMegabytes}\r\n\r\n"), SocketFlags.None, TestContext.Current.CancellationToken);
            await hanging.SendAsync(new byte[300_000], SocketFlags.None, TestContext.Current.CancellationToken);
            for (int i = 0; i < 100 && pool.GetStatistics().BytesInUse == 0; i++)
            {
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }

            Assert.True(pool.GetStatistics().BytesInUse > 0, "the upload in progress holds no block of the pool");
        }
        finally
        {
            using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await app.StopAsync(stopping.Token);
        }

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        for (int i = 0; i < 100 && after.BytesInUse != 0; i++)
        {
            await Task.Delay(50, TestContext.Current.CancellationToken);
            after = pool.GetStatistics();
        }

        Assert.True(after.RentsByOwner.GetValueOrDefault("kestrel") > 0, "Kestrel did not rent from the pool");
        Assert.Equal(0, after.BytesInUse);
        await app.DisposeAsync();

        IReadOnlyList<FakeLogRecord> records = logs.Collector.GetSnapshot();
        // The aborted uploads log the app's ConnectionResetException and Kestrel's failed drain: expected. Anything that
        // went through the pool's code is not.
        string poolErrors = string.Join(Environment.NewLine, records
            .Where(r => r.Exception is not null && r.Exception.ToString().Replace("Zipora.Buffers.Tests", string.Empty, StringComparison.Ordinal).Contains("Zipora.Buffers", StringComparison.Ordinal))
            .Select(r => $"{r.Level} {r.Category}: {r.Message} {r.Exception}"));
        Assert.True(poolErrors.Length == 0, poolErrors);
    }
}
