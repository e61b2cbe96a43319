using System;
using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Threading;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="Utf8JsonWriter"/> over a <see cref="SegmentedBufferWriter"/>, with the writer reset, consumed or
/// disposed between its flushes, and disposed from another thread in the middle of a serialization: the document
/// after a reset is exactly what was written since, and a serialization whose writer is disposed under it ends with
/// <see cref="ObjectDisposedException"/> (or completes, when the dispose came after), never another exception, and
/// every block goes back once.
/// </summary>
public sealed class SegmentedJsonWriterInterleavingTests
{
    [Fact]
    public void AJsonWriterFlushedThenItsWriterResetOrConsumedWritesTheNextDocumentExactly()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        using (var writer = new SegmentedBufferWriter(options))
        {
            using var json = new Utf8JsonWriter(writer);
            for (int round = 0; round < 20; round++)
            {
                Write(json, round, items: 500 * (round % 4));
                json.Flush();
                string expected = Expected(round, 500 * (round % 4));
                Assert.Equal(expected, Encoding.UTF8.GetString(writer.GetReadOnlySequence().ToArray()));

                // Emptied one way or another, and the JSON writer reset to write the next document from the start.
                if (round % 2 == 0)
                {
                    writer.Reset();
                }
                else
                {
                    writer.AdvanceTo(writer.GetReadOnlySequence().End);
                }

                json.Reset(writer);
            }
        }

        AssertBalanced(pool);
    }

    [Fact]
    public void ASerializationWhoseWriterIsDisposedFromAnotherThreadEndsWithObjectDisposedOrCompletes()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        int[] document = new int[20_000];
        int disposedUnder = 0;
        for (int round = 0; round < 40; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            int spin = round * 500;
            Thread disposer = Started(() =>
            {
                Thread.SpinWait(spin);
                writer.Dispose();
            });
            try
            {
                using var json = new Utf8JsonWriter(writer);
                JsonSerializer.Serialize(json, document);
            }
            catch (ObjectDisposedException)
            {
                // Told: its memory went back under it (the writer's call, or its stale memory's).
                disposedUnder++;
            }

            disposer.Join();
        }

        Assert.True(disposedUnder > 0, "no dispose landed inside a serialization");
        AssertBalanced(pool);
    }

    private static void Write(Utf8JsonWriter json, int round, int items)
    {
        json.WriteStartObject();
        json.WriteNumber("round", round);
        json.WriteStartArray("items");
        for (int i = 0; i < items; i++)
        {
            json.WriteStringValue($"item {i}");
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static string Expected(int round, int items)
    {
        var expected = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(expected))
        {
            Write(json, round, items);
        }

        return Encoding.UTF8.GetString(expected.WrittenSpan);
    }
}
