using System;

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
}
