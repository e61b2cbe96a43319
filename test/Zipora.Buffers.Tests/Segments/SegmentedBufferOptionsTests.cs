using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="SegmentedBufferOptions"/> as the writer and the stream take them: checked when a buffer is made, named
/// when wrong, and read once, so a later change reaches only the buffers made after it.
/// </summary>
public sealed class SegmentedBufferOptionsTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    [Theory]
    [InlineData(0, 64, 1, "InitialSegmentSize")]
    [InlineData(128, 64, 1, "InitialSegmentSize")]
    [InlineData(64, 0, 1, "MaxSegmentSize")]
    [InlineData(64, 64, -1, "MaxLength")]
    public void InvalidOptionsThrowNamingTheOption(int initial, int max, long maxLength, string option)
    {
        var options = new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = initial, MaxSegmentSize = max, MaxLength = maxLength };
        ArgumentOutOfRangeException error = Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedBufferWriter(options));
        Assert.Equal(option, error.ParamName);
        Assert.Contains($"SegmentedBufferOptions.{option}", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedMemoryStream(options));
    }

    [Fact]
    public void AnOptionChangedAfterAWriterWasMadeReachesOnlyTheWritersMadeAfter()
    {
        var options = new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 1024, MaxLength = 10_000 };
        using var first = new SegmentedBufferWriter(options);
        options.InitialSegmentSize = 8192;
        options.MaxLength = 20_000;
        using var second = new SegmentedBufferWriter(options);

        Assert.Equal(10_000, first.MaxLength);
        Assert.Equal(20_000, second.MaxLength);
        Assert.InRange(first.GetMemory(1).Length, 1024, 8191);
        Assert.True(second.GetMemory(1).Length >= 8192, "the second writer's first segment follows the changed initial size");
    }

    [Fact]
    public void AnOptionMadeInvalidAfterUseIsRefusedAtTheNextWriterAndAcceptedOnceMended()
    {
        var options = new SegmentedBufferOptions { Pool = _pool };
        new SegmentedBufferWriter(options).Dispose();

        options.InitialSegmentSize = 0;
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedBufferWriter(options));
        Assert.Equal(nameof(SegmentedBufferOptions.InitialSegmentSize), error.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedMemoryStream(options));

        options.InitialSegmentSize = 512;
        using var mended = new SegmentedBufferWriter(options);
        Assert.InRange(mended.GetMemory(1).Length, 512, 1023);
    }

    [Fact]
    public void AMaxSegmentSizeAboveThePoolsLargestBufferIsRefused()
    {
        using var small = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = 65536 });
        var options = new SegmentedBufferOptions { Pool = small, MaxSegmentSize = 65537 };
        Assert.Equal("MaxSegmentSize", Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedBufferWriter(options)).ParamName);
        Assert.Throws<ArgumentNullException>(() => new SegmentedBufferWriter(null!));
    }

    [Fact]
    public void AnUnsetMaxSegmentSizeGivesWayToAPoolWhoseLargestBufferIsSmaller()
    {
        // The README: MaxSegmentSize is 128 KB, "or the pool's MaxBufferSize when that is smaller and the option is left
        // unset": a pool of 16 KB buffers at most serves a writer and a stream made with the default options.
        const int largest = 16 * 1024;
        using var small = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = largest });
        var options = new SegmentedBufferOptions { Pool = small };
        byte[] chunk = new byte[1000];
        using (var writer = new SegmentedBufferWriter(options))
        {
            for (int i = 0; i < 200; i++)
            {
                writer.Write(chunk);
            }

            ReadOnlySequence<byte> written = writer.GetReadOnlySequence();
            Assert.Equal(200 * chunk.Length, written.Length);
            int longest = 0;
            foreach (ReadOnlyMemory<byte> segment in written)
            {
                longest = Math.Max(longest, segment.Length);
            }

            Assert.Equal(largest, longest);
        }

        using var stream = new SegmentedMemoryStream(options);
        stream.Write(new byte[3 * largest]);
        Assert.Equal(3 * largest, stream.Length);
    }
}
