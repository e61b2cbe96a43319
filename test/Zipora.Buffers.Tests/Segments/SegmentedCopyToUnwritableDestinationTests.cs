using System;
using System.Buffers;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The synchronous copies out (a writer's <c>CopyTo(Stream)</c>, a stream's <c>WriteTo</c>) checked their destination only
/// by writing to it: an unwritable one threw whatever it throws (undocumented), and not at all when there was nothing
/// to write. They now check it first, as <c>CopyToAsync</c> and <see cref="Stream.CopyTo(Stream)"/> do.
/// </summary>
public sealed class SegmentedCopyToUnwritableDestinationTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(10_000)]
    public void WriterCopyToAReadOnlyStreamThrowsNotSupportedNamingTheDestination(int length)
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        BuffersExtensions.Write(writer, new byte[length]);

        NotSupportedException error = Assert.Throws<NotSupportedException>(() => writer.CopyTo(new UnwritableStream()));

        Assert.Contains("destination", error.Message, StringComparison.Ordinal);
        Assert.Equal(length, writer.Length);
        Assert.Equal(length, writer.ToArray().Length);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10_000)]
    public void StreamWriteToAReadOnlyStreamThrowsNotSupportedNamingTheStream(int length)
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool });
        stream.Write(new byte[length]);

        NotSupportedException error = Assert.Throws<NotSupportedException>(() => stream.WriteTo(new UnwritableStream()));

        Assert.Contains("stream", error.Message, StringComparison.Ordinal);
        Assert.Equal(length, stream.Length);
        stream.WriteByte(1);
    }

    [Fact]
    public void WriterCopyToADisposedStreamThrowsObjectDisposedEvenWhenEmpty()
    {
        using var writer = new SegmentedBufferWriter();
        var destination = new MemoryStream();
        destination.Dispose();

        Assert.Throws<ObjectDisposedException>(() => writer.CopyTo(destination));
    }

    /// <summary>A readable stream that cannot be written, and says so in a message of its own (not the library's).</summary>
    private sealed class UnwritableStream : MemoryStream
    {
        public override bool CanWrite => false;

        public override void Write(ReadOnlySpan<byte> buffer) => throw new NotSupportedException("Unwritable.");

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("Unwritable.");
    }
}
