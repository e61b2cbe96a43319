using System;
using System.Buffers;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The writer and stream over every configuration of the pool (owners reused, diagnostic mode, pinned arrays, the
/// portable backend, no thread caches), and when the pool refuses memory: the data round-trips, every block goes back
/// once, and a refused rent leaves the buffer as it was.
/// </summary>
public sealed class SegmentedPoolConfigurationTests
{
    private const int Megabyte = 1024 * 1024;

    public static TheoryData<string> Configurations => ["default", "reuse-owners", "diagnostics", "pinned-arrays", "portable", "no-thread-cache"];

    private static TieredMemoryPoolOptions OptionsFor(string configuration) => configuration switch
    {
        "reuse-owners" => new() { ReuseOwners = true },
        "diagnostics" => new() { Diagnostics = DiagnosticLevel.All },
        "pinned-arrays" => new() { UsePinnedArrays = true },
        "portable" => new() { UsePortableBackend = true },
        "no-thread-cache" => new() { ThreadCacheMaxBuffers = 0 },
        _ => new(),
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void EveryConfigurationRoundTripsAndGetsEveryBlockBackOnce(string configuration)
    {
        using var pool = new TieredMemoryPool(OptionsFor(configuration));
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 512, MaxSegmentSize = 256 * 1024 };
        byte[] data = new byte[3 * Megabyte];
        new Random(7).NextBytes(data);

        using (var writer = new SegmentedBufferWriter(options))
        {
            writer.Write(data);
            writer.Consume(100_000);
            Assert.Equal(data[100_000..], writer.ToArray());
            writer.Reset();
            writer.Write(data.AsSpan(0, 1000));
            Assert.Equal(data[..1000], writer.ToArray());
        }

        using (var stream = new SegmentedMemoryStream(options))
        {
            stream.Write(data);
            stream.SetLength(Megabyte);
            stream.Position = 0;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            Assert.Equal(data[..Megabyte], copy.ToArray());
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.DoubleDisposes);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(statistics.Small.Rents + statistics.Medium.Rents + statistics.Large.Rents + statistics.Huge.Rents,
            statistics.Small.Returns + statistics.Medium.Returns + statistics.Large.Returns + statistics.Huge.Returns);
    }

    [Fact]
    public void AStreamWriteThePoolRefusesThrowsAndLeavesTheStreamAsItWas()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = Megabyte });
        byte[] first = new byte[Megabyte];
        first.AsSpan().Fill(3);
        stream.Write(first);
        long held = pool.GetStatistics().Segmented.BytesHeld;

        Assert.Throws<InsufficientMemoryException>(() => stream.Write(new byte[16 * Megabyte]));
        Assert.Equal(Megabyte, stream.Length);
        Assert.Equal(Megabyte, stream.Position);
        Assert.Equal(held, pool.GetStatistics().Segmented.BytesHeld);

        Assert.Throws<InsufficientMemoryException>(() => stream.SetLength(16 * Megabyte));
        Assert.Equal(Megabyte, stream.Length);
        Assert.Equal(first, stream.ToArray());

        // Still usable.
        stream.Write(first);
        Assert.Equal(2 * Megabyte, stream.Length);
    }

    /// <summary>
    /// A write into a stream that holds no segment yet, which the pool refuses part way (its first segments rented, a
    /// later one refused), gives back every segment it rented: the stream holds nothing, as before the write. The
    /// rollback empties the stream with the shrink of <c>SetLength(0)</c>, which keeps the first segment for the next
    /// message: kept here, the failed write left the stream holding a block (the largest segment size) it was never
    /// asked to keep, at the moment the pool is out of memory.
    /// </summary>
    [Fact]
    public void AFailedWriteIntoAStreamThatHeldNothingGivesBackEverySegmentItRented()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = Megabyte });

        Assert.Throws<InsufficientMemoryException>(() => stream.Write(new byte[16 * Megabyte]));
        Assert.Equal(0, stream.Length);
        Assert.Equal(0, stream.Position);
        Assert.Equal(0, pool.GetStatistics().Segmented.BytesHeld);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);

        Assert.Throws<InsufficientMemoryException>(() => stream.SetLength(16 * Megabyte));
        Assert.Equal(0, stream.Length);
        Assert.Equal(0, pool.GetStatistics().Segmented.BytesHeld);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);

        // Still usable.
        stream.Write(new byte[5000]);
        Assert.Equal(5000, stream.Length);
    }

    /// <summary>
    /// A refused write into a stream emptied with <c>SetLength(0)</c> keeps the first segment the stream kept, as it was,
    /// and gives back every other.
    /// </summary>
    [Fact]
    public void AFailedWriteIntoAnEmptiedStreamKeepsOnlyItsKeptFirstSegment()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = Megabyte });
        stream.Write(new byte[1000]);
        stream.SetLength(0);
        long held = pool.GetStatistics().Segmented.BytesHeld;
        Assert.True(held > 0);

        Assert.Throws<InsufficientMemoryException>(() => stream.Write(new byte[16 * Megabyte]));
        Assert.Equal(0, stream.Length);
        Assert.Equal(held, pool.GetStatistics().Segmented.BytesHeld);
        stream.Write(new byte[5000]);
        Assert.Equal(5000, stream.Length);
    }

    [Fact]
    public void AWriterGetMemoryThePoolRefusesThrowsAndLeavesTheWriterAsItWas()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 8 * Megabyte, EnableHugepages = false });
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[5000]);
        Assert.Throws<InsufficientMemoryException>(() => writer.GetMemory(16 * Megabyte));
        Assert.Equal(5000, writer.Length);
        writer.Write(new byte[5000]);
        Assert.Equal(10_000, writer.ToArray().Length);
    }
}
