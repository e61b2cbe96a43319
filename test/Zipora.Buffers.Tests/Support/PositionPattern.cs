using System;
using System.IO.Pipelines;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The bytes of a test stream, by absolute position: cheap to compute and different across nearby positions and
/// segments, so a byte landing in the wrong place or coming from another buffer is caught wherever it is read back.
/// </summary>
internal static class PositionPattern
{
    /// <summary>The byte at absolute position <paramref name="position"/> of the stream.</summary>
    public static byte Expected(long position) => (byte)(position ^ (position >> 8) ^ (position >> 17));

    /// <summary>Writes the stream's bytes from <paramref name="position"/> into <paramref name="span"/>.</summary>
    public static void Fill(Span<byte> span, long position)
    {
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = Expected(position + i);
        }
    }

    /// <summary>Whether <paramref name="span"/> holds the stream's bytes from <paramref name="position"/>.</summary>
    public static bool Matches(ReadOnlySpan<byte> span, long position)
    {
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != Expected(position + i))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Reads <paramref name="reader"/> to its end, checking that every segment holds the stream's bytes at its position,
    /// and returns how many bytes were read (the reader is left for the caller to complete).
    /// </summary>
    public static async Task<long> ReadToEndCheckingAsync(PipeReader reader)
    {
        long read = 0;
        while (true)
        {
            ReadResult result = await reader.ReadAsync(TestContext.Current.CancellationToken);
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                Assert.True(Matches(segment.Span, read), $"wrong byte in the segment at {read}");
                read += segment.Length;
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return read;
            }
        }
    }
}
