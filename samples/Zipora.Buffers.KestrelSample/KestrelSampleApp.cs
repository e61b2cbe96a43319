using System;
using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace Zipora.Buffers.KestrelSample;

/// <summary>
/// A minimal API whose Kestrel connection buffers all come from the tiered pool. Endpoints:
/// <c>GET /pool</c> (the pool's statistics), <c>GET /hello</c> (a small response, for load tests), <c>GET /bytes/{n}?seed=s</c> (n pseudo-random bytes, their SHA-256 in
/// the <c>X-Content-SHA256</c> header, lower-case hex as <c>sha256sum</c> prints it), <c>POST /sha256</c> (the SHA-256 and length of the request body),
/// and the segmented buffers' <c>GET /json/{items}</c> and <c>POST /gzip</c> (see <see cref="SegmentedEndpoints"/>).
/// </summary>
public static class KestrelSampleApp
{
    /// <summary>The HTTP/1.1 port, unless <c>--http1-port</c> says otherwise (0 picks a free one).</summary>
    public const int DefaultHttp1Port = 5080;

    /// <summary>The cleartext HTTP/2 (prior knowledge) port, unless <c>--http2-port</c> says otherwise.</summary>
    public const int DefaultHttp2Port = 5081;

    public static WebApplication Build(string[] args)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(args);

        // Quiet by default, so a load test measures the server and not its console: Kestrel and the routing log five
        // Information lines per request. Only by default: a filter added here wins over the configuration's rule for the
        // same category, so --Logging:LogLevel:Microsoft.AspNetCore=Information could not bring them back.
        if (builder.Configuration["Logging:LogLevel:Microsoft.AspNetCore"] is null)
        {
            builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        }
        int http1Port = builder.Configuration.GetValue("http1-port", DefaultHttp1Port);
        int http2Port = builder.Configuration.GetValue("http2-port", DefaultHttp2Port);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = 256L * 1024 * 1024;
            kestrel.Listen(System.Net.IPAddress.Loopback, http1Port, listen => listen.Protocols = HttpProtocols.Http1);
            kestrel.Listen(System.Net.IPAddress.Loopback, http2Port, listen => listen.Protocols = HttpProtocols.Http2);
        });

        // The one line: Kestrel's socket transport now rents every buffer from the tiered pool. (--pool=default
        // keeps Kestrel's own pool, so the two can be compared under the same load; --pool=tiered-reuse reuses owners
        // for the app's own rents, the segmented endpoints', while Kestrel's views keep an owner per rent.)
        string pool = builder.Configuration.GetValue("pool", "tiered")!;
        if (pool != "default")
        {
            builder.Services.AddTieredMemoryPool(options =>
            {
                options.Name = "kestrel-sample";
                options.ReuseOwners = pool == "tiered-reuse";
            });
        }

        WebApplication app = builder.Build();
        app.MapGet("/pool", (IServiceProvider services) => Results.Text(services.GetService<TieredMemoryPool>()?.GetStatistics().ToString() ?? "Kestrel's default pool"));
        app.MapGet("/bytes/{length:long}", WriteBytesAsync);
        app.MapPost("/sha256", (Delegate)HashBodyAsync);
        app.MapGet("/hello", () => "Hello from Kestrel on Zipora.Buffers");
        SegmentedEndpoints.Map(app);
        return app;
    }

    private static async Task WriteBytesAsync(HttpContext context, long length, int seed = 1)
    {
        context.Response.ContentLength = length;
        context.Response.Headers["X-Content-SHA256"] = Convert.ToHexStringLower(Hash(length, seed));
        PipeWriter body = context.Response.BodyWriter;
        var content = new PseudoRandomBytes(seed);
        for (long written = 0; written < length;)
        {
            // Ask for up to 64 KB at a time: larger than Kestrel's 4 KB segments, so these rents reach the large tier.
            int chunk = (int)Math.Min(64 * 1024, length - written);
            Memory<byte> memory = body.GetMemory(chunk);
            content.Fill(memory.Span[..chunk]);
            body.Advance(chunk);
            written += chunk;
            FlushResult flush = await body.FlushAsync(context.RequestAborted);
            if (flush.IsCanceled || flush.IsCompleted)
            {
                return;
            }
        }
    }

    private static async Task<IResult> HashBodyAsync(HttpContext context)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        PipeReader body = context.Request.BodyReader;
        long length = 0;
        while (true)
        {
            ReadResult result = await body.ReadAsync(context.RequestAborted);
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                hash.AppendData(segment.Span);
                length += segment.Length;
            }

            body.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        return Results.Text(string.Create(CultureInfo.InvariantCulture, $"{Convert.ToHexStringLower(hash.GetHashAndReset())} {length}"));
    }

    /// <summary>The SHA-256 of the <paramref name="length"/> bytes that <c>/bytes</c> sends for <paramref name="seed"/>.</summary>
    public static byte[] Hash(long length, int seed)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var content = new PseudoRandomBytes(seed);
        byte[] chunk = ArrayPool<byte>.Shared.Rent(64 * 1024);
        for (long done = 0; done < length;)
        {
            int count = (int)Math.Min(chunk.Length, length - done);
            content.Fill(chunk.AsSpan(0, count));
            hash.AppendData(chunk, 0, count);
            done += count;
        }

        ArrayPool<byte>.Shared.Return(chunk);
        return hash.GetHashAndReset();
    }
}
