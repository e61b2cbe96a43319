using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>The sequence a writer gives after a consume: where it starts, and where its positions consume to.</summary>
public sealed class SegmentedSequencePositionTests
{
    [Fact]
    public void ASequenceTakenAfterAConsumeStartsAtTheFirstUnconsumedByteAndItsPositionsConsumeFromThere()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16 });
        Assert.True(writer.GetReadOnlySequence().IsEmpty);
        byte[] data = new byte[100];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)i;
        }

        writer.Write(data);
        writer.Consume(21);
        ReadOnlySequence<byte> rest = writer.GetReadOnlySequence();
        Assert.Equal(data[21..], rest.ToArray());
        writer.AdvanceTo(rest.GetPosition(40));
        Assert.Equal(data[61..], writer.GetReadOnlySequence().ToArray());
    }
}
