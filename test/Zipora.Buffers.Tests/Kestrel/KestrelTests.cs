using System;
using System.Buffers;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text.Json;
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
        (WebApplication app, int http1Port, int http2Port) = await StartSampleAsync();
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
        (WebApplication app, int http1Port, int http2Port) = await StartSampleAsync();
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

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(20_000)]
    public async Task TheJsonEndpointSendsTheDocumentTheWriterBuiltAndReturnsItsSegments(int items)
    {
        (WebApplication app, int http1Port, _) = await StartSampleAsync();
        TieredMemoryPool pool = app.Services.GetRequiredService<TieredMemoryPool>();
        try
        {
            using HttpClient client = CreateClient(http1Port, "1.1");
            using HttpResponseMessage response = await client.GetAsync($"/json/{items}", TestContext.Current.CancellationToken);
            byte[] body = await response.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);

            var expected = new ArrayBufferWriter<byte>();
            using (var json = new Utf8JsonWriter(expected))
            {
                SegmentedEndpoints.WriteItems(json, items);
            }

            Assert.Equal(expected.WrittenCount, response.Content.Headers.ContentLength);
            Assert.Equal(expected.WrittenSpan.ToArray(), body);
            Assert.Equal(items, JsonDocument.Parse(body).RootElement.GetArrayLength());

            // The document came from the pool Kestrel uses, and its segments went back with the response (the handler
            // disposes the writer once its last write returns, which may be just after the client has every byte).
            SegmentedBufferStatistics segmented = pool.GetStatistics().Segmented;
            for (int i = 0; i < 50 && segmented.LiveBuffers != 0; i++)
            {
                await Task.Delay(20, TestContext.Current.CancellationToken);
                segmented = pool.GetStatistics().Segmented;
            }

            Assert.Equal(0, segmented.LiveBuffers);
            Assert.Equal(0, segmented.BytesHeld);
            Assert.True(items == 0 || segmented.LargestMessage >= expected.WrittenCount, segmented.ToString());
        }
        finally
        {
            await app.StopAsync(TestContext.Current.CancellationToken);
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task TheJsonEndpointRefusesACountOutOfRange()
    {
        (WebApplication app, int http1Port, _) = await StartSampleAsync();
        try
        {
            using HttpClient client = CreateClient(http1Port, "1.1");
            using HttpResponseMessage response = await client.GetAsync($"/json/{SegmentedEndpoints.MaxItems + 1}", TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        }
        finally
        {
            await app.StopAsync(TestContext.Current.CancellationToken);
            await app.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("1.1", 100)]
    [InlineData("1.1", 3 * 1024 * 1024)]
    [InlineData("2.0", 200_000)]
    public async Task TheGzipEndpointCompressesIntoASegmentedStreamAndSendsItBack(string protocol, int size)
    {
        (WebApplication app, int http1Port, int http2Port) = await StartSampleAsync();
        TieredMemoryPool pool = app.Services.GetRequiredService<TieredMemoryPool>();
        try
        {
            using HttpClient client = CreateClient(protocol == "2.0" ? http2Port : http1Port, protocol);

            // Half random, half runs of one byte: something to compress, and something that does not compress.
            byte[] upload = RandomNumberGenerator.GetBytes(size);
            Array.Fill(upload, (byte)'z', 0, size / 2);
            using HttpResponseMessage response = await client.PostAsync("/gzip", new ByteArrayContent(upload), TestContext.Current.CancellationToken);
            Assert.Equal("application/gzip", response.Content.Headers.ContentType?.MediaType);
            await using var gzip = new GZipStream(await response.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken), CompressionMode.Decompress);
            using var decompressed = new MemoryStream();
            await gzip.CopyToAsync(decompressed, TestContext.Current.CancellationToken);
            Assert.Equal(upload, decompressed.ToArray());
        }
        finally
        {
            await app.StopAsync(TestContext.Current.CancellationToken);
        }

        // The stream was disposed with its response: nothing held, and every block back.
        SegmentedBufferStatistics segmented = pool.GetStatistics().Segmented;
        Assert.Equal(0, segmented.LiveBuffers);
        Assert.Equal(0, segmented.BytesHeld);
        Assert.Equal(1, segmented.Messages);
        await app.DisposeAsync();
    }

    /// <summary>
    /// The sample, started on two ports the system picks (HTTP/1.1, then cleartext HTTP/2), and the ports it got. A port
    /// probed free and passed in can be taken by any other socket before Kestrel binds it (a CI run failed so); port 0
    /// cannot. Kestrel binds its endpoints in the order they were configured and lists their addresses in that order; a
    /// swap would fail every test here, since each asks for its protocol exactly.
    /// </summary>
    private static async Task<(WebApplication App, int Http1Port, int Http2Port)> StartSampleAsync()
    {
        WebApplication app = KestrelSampleApp.Build(["--http1-port=0", "--http2-port=0"]);
        await app.StartAsync(TestContext.Current.CancellationToken);
        int[] ports = [.. app.Urls.Select(url => new Uri(url).Port)];
        Assert.Equal(2, ports.Length);
        Assert.DoesNotContain(0, ports);
        return (app, ports[0], ports[1]);
    }

    private static HttpClient CreateClient(int port, string protocol) => new()
    {
        BaseAddress = new Uri($"http://127.0.0.1:{port}"),
        DefaultRequestVersion = Version.Parse(protocol),
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromMinutes(2),
    };
}
