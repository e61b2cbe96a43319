using System;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Security.Cryptography;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Zipora.Buffers.KestrelSample;

namespace Zipora.Buffers.Tests;

/// <summary>A real Kestrel on 127.0.0.1 (the Kestrel sample), its connection buffers from the tiered pool.</summary>
public sealed class KestrelTests
{
    public static TheoryData<string, int> ProtocolsAndSizes
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (string protocol in new[] { "1.1", "2.0" })
            {
                foreach (int size in new[] { 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024, 64 * 1024 * 1024 })
                {
                    data.Add(protocol, size);
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(ProtocolsAndSizes))]
    public async Task BodiesGoBothWaysIntactAndEveryBufferComesBack(string protocol, int size)
    {
        (WebApplication app, int http1Port, int http2Port) = BuildSample();
        await app.StartAsync(TestContext.Current.CancellationToken);
        TieredMemoryPool pool = app.Services.GetRequiredService<TieredMemoryPool>();
        try
        {
            using HttpClient client = CreateClient(protocol == "2.0" ? http2Port : http1Port, protocol);

            // Upload: the server hashes what it received.
            byte[] upload = RandomNumberGenerator.GetBytes(size);
            using HttpResponseMessage posted = await client.PostAsync("/sha256", new ByteArrayContent(upload), TestContext.Current.CancellationToken);
            Assert.Equal(Version.Parse(protocol), posted.Version);
            string echoed = await posted.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            Assert.Equal($"{Convert.ToHexStringLower(SHA256.HashData(upload))} {size}", echoed);

            // Download: the client hashes what it received and compares with the server's hash.
            using HttpResponseMessage got = await client.GetAsync($"/bytes/{size}?seed=7", HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken);
            byte[] downloaded = await got.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);
            Assert.Equal(size, downloaded.Length);
            Assert.Equal(got.Headers.GetValues("X-Content-SHA256").Single(), Convert.ToHexStringLower(SHA256.HashData(downloaded)));
            Assert.Equal(Convert.ToHexString(KestrelSampleApp.Hash(size, 7)), Convert.ToHexString(SHA256.HashData(downloaded)));

            TieredMemoryPoolStatistics during = pool.GetStatistics();
            Assert.True(during.RentsByOwner.TryGetValue("kestrel", out long kestrelRents) && kestrelRents > 0, "Kestrel did not rent from the tiered pool");
            Assert.True(during.Medium.Rents > 0);
        }
        finally
        {
            await app.StopAsync(TestContext.Current.CancellationToken);
        }

        // Every buffer Kestrel rented has come back once the server has stopped.
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        for (int i = 0; i < 50 && after.BytesInUse != 0; i++)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
            after = pool.GetStatistics();
        }

        Assert.Equal(0, after.BytesInUse);
        await app.DisposeAsync();
    }

    [Fact]
    public async Task ThePoolEndpointServesTheStatistics()
    {
        (WebApplication app, int http1Port, int http2Port) = BuildSample();
        await app.StartAsync(TestContext.Current.CancellationToken);
        try
        {
            using HttpClient client = CreateClient(http1Port, "1.1");
            string statistics = await client.GetStringAsync("/pool", TestContext.Current.CancellationToken);
            Assert.Contains("medium", statistics, StringComparison.Ordinal);
            Assert.Contains("backend", statistics, StringComparison.Ordinal);
        }
        finally
        {
            await app.StopAsync(TestContext.Current.CancellationToken);
            await app.DisposeAsync();
        }
    }

    /// <summary>The sample on two free loopback ports: HTTP/1.1 and cleartext HTTP/2.</summary>
    private static (WebApplication App, int Http1Port, int Http2Port) BuildSample()
    {
        int http1Port = FreePort();
        int http2Port = FreePort();
        return (KestrelSampleApp.Build([$"--http1-port={http1Port}", $"--http2-port={http2Port}"]), http1Port, http2Port);
    }

    private static int FreePort()
    {
        using var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static HttpClient CreateClient(int port, string protocol) => new()
    {
        BaseAddress = new Uri($"http://127.0.0.1:{port}"),
        DefaultRequestVersion = Version.Parse(protocol),
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromMinutes(2),
    };
}
