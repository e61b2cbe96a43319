using System;
using System.IO;
using System.IO.Compression;
using System.Text.Json;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.KestrelSample;

/// <summary>
/// The segmented buffers in HTTP handlers: <c>GET /json/{items}</c> writes a JSON document with System.Text.Json into a
/// <see cref="SegmentedBufferWriter"/> and sends its segments as they are (no array of the whole document), and
/// <c>POST /gzip</c> compresses the request body into a <see cref="SegmentedMemoryStream"/> where a handler would use a
/// <see cref="MemoryStream"/>, and returns it. Both rent from the pool Kestrel rents from.
/// </summary>
public static class SegmentedEndpoints
{
    /// <summary>The most items <c>/json</c> writes (about 9 MB of JSON).</summary>
    public const int MaxItems = 100_000;

    public static void Map(WebApplication app)
    {
        app.MapGet("/json/{items:int}", WriteJsonAsync);
        app.MapPost("/gzip", (Delegate)CompressBodyAsync);
    }

    /// <summary>The items <c>/json/{items}</c> sends: item <c>i</c> has id <c>i</c>, a name and <c>i</c> squared.</summary>
    public static void WriteItems(Utf8JsonWriter json, int items)
    {
        json.WriteStartArray();
        for (int i = 0; i < items; i++)
        {
            json.WriteStartObject();
            json.WriteNumber("id", i);
            json.WriteString("name", $"item {i}");
            json.WriteNumber("square", (long)i * i);
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    private static async Task WriteJsonAsync(HttpContext context, int items)
    {
        if (items is < 0 or > MaxItems)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsync($"items must be 0 to {MaxItems}", context.RequestAborted);
            return;
        }

        using var document = new SegmentedBufferWriter(OptionsFor(context));
        using (var json = new Utf8JsonWriter(document))
        {
            WriteItems(json, items);
        }

        // The length is known before the first byte goes out, and each segment is written as it is.
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = document.Length;
        foreach (ReadOnlyMemory<byte> segment in document.GetReadOnlySequence())
        {
            await context.Response.BodyWriter.WriteAsync(segment, context.RequestAborted);
        }
    }

    private static async Task<IResult> CompressBodyAsync(HttpContext context)
    {
        // Results.Stream disposes the stream once the response is written: its segments go back to the pool then.
        var compressed = new SegmentedMemoryStream(OptionsFor(context));
        await using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        {
            await context.Request.Body.CopyToAsync(gzip, context.RequestAborted);
        }

        compressed.Position = 0;
        return Results.Stream(compressed, "application/gzip");
    }

    /// <summary>The pool Kestrel rents from when it is the tiered pool (the shared one otherwise).</summary>
    private static SegmentedBufferOptions OptionsFor(HttpContext context) =>
        new() { Pool = context.RequestServices.GetService<TieredMemoryPool>() };
}
