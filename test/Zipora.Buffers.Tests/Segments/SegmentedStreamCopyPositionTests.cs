using System;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// CopyTo and CopyToAsync read the position once and write it back once, as the stream's other calls do: the
/// destination's own code may move the source's position while the copy runs (the setter and <c>Seek</c> take no guard),
/// and the copy then ends at the end of what it copied, never at the moved position plus the bytes copied. Before the
/// fix the copy added the bytes copied to the position read again after the writes: a destination that moved the
/// position to <see cref="long.MaxValue"/> left it negative, and the next read threw ArgumentOutOfRangeException.
/// </summary>
public sealed class SegmentedStreamCopyPositionTests : IDisposable
{
    private readonly TieredMemoryPool _pool = new();

    public void Dispose() => _pool.Dispose();

    [Fact]
    public void APositionMovedByTheDestinationDuringCopyToNeitherOverflowsNorMixesWithTheCopy()
    {
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 16, MaxSegmentSize = 16 });
        stream.Write(new byte[40]);
        stream.Position = 10;
        using var destination = new SegmentedSingleThreadUseSafetyTests.CallbackStream(_ => stream.Position = long.MaxValue);

        stream.CopyTo(destination);

        Assert.Equal(30, destination.Received.Length);
        Assert.Equal(40, stream.Position);
        Assert.Equal(0, stream.Read(new byte[1]));
    }

    [Fact]
    public async Task APositionMovedByTheDestinationDuringCopyToAsyncNeitherOverflowsNorMixesWithTheCopy()
    {
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = _pool, InitialSegmentSize = 16, MaxSegmentSize = 16 });
        stream.Write(new byte[40]);
        stream.Position = 10;
        using var destination = new SegmentedSingleThreadUseSafetyTests.CallbackStream(_ => stream.Position = 5);

        await stream.CopyToAsync(destination, TestContext.Current.CancellationToken);

        Assert.Equal(30, destination.Received.Length);
        Assert.Equal(40, stream.Position);
    }
}
