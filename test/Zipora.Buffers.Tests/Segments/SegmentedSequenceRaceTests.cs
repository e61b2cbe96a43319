using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="SegmentedBufferWriter.GetReadOnlySequence"/> while another thread disposes the writer or changes its
/// chain: it gives a sequence or throws what the documentation says (never the sequence constructor's
/// <see cref="ArgumentException"/> over segments being cleared); the pool's rents and returns balance whatever happened.
/// </summary>
public sealed class SegmentedSequenceRaceTests
{
    [Fact]
    public void AGetReadOnlySequenceRacingADisposeGetsASequenceOrObjectDisposedAndNothingElse()
    {
        using var pool = new TieredMemoryPool();

        // Several segments, so the sequence spans a head and a tail that the dispose clears one after the other.
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 };
        const int Written = 5000;
        int disposedSeen = 0;
        for (int round = 0; round < 300; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            writer.Write(new byte[Written]);
            using var start = new Barrier(2);
            Exception? unexpected = null;
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 10_000; i++)
                    {
                        // Its contents are valid only until the dispose, which may come at once: not read here.
                        _ = writer.GetReadOnlySequence();
                    }
                }
                catch (ObjectDisposedException)
                {
                    Interlocked.Increment(ref disposedSeen);
                }
                catch (Exception exception)
                {
                    unexpected = exception;
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 20);
            writer.Dispose();
            user.Join();
            Assert.Null(unexpected);
            Assert.Throws<ObjectDisposedException>(() => writer.GetReadOnlySequence());
        }

        SegmentedBuffers.AssertBalanced(pool);
        Assert.True(disposedSeen > 0, "no GetReadOnlySequence ever met the dispose: the race was not exercised");
    }

    [Fact]
    public void GetReadOnlySequenceRacingWritesConsumesAndResetsOnAnotherThreadIsToldOrGivenASequenceAndLosesNothing()
    {
        // Misuse: one thread takes the data while another rewrites the chain. The guard tells whichever thread met the
        // other inside; nothing else is thrown, and no segment is lost or returned twice. (A sequence given is valid
        // only until the next consume or reset, which the other thread makes at once: its contents prove nothing.)
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 1024 };
        Exception? unexpected = null;
        int told = 0;
        for (int round = 0; round < 50; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            using var start = new Barrier(2);
            using var stop = new CancellationTokenSource();
            Thread reader = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        _ = writer.GetReadOnlySequence();
                    }
                    catch (InvalidOperationException exception) when (exception.Message.Contains("two threads", StringComparison.Ordinal))
                    {
                        Interlocked.Increment(ref told);
                    }
                    catch (Exception exception)
                    {
                        unexpected ??= exception;
                    }
                }
            });
            start.SignalAndWait();
            for (int i = 0; i < 2000; i++)
            {
                try
                {
                    writer.Write(new byte[1 + (i * 37 % 700)]);
                    if (i % 3 == 0)
                    {
                        writer.Consume(writer.Length / 2);
                    }
                    else if (i % 7 == 0)
                    {
                        writer.Reset();
                    }
                }
                catch (InvalidOperationException exception) when (exception.Message.Contains("two threads", StringComparison.Ordinal))
                {
                    // This thread met the other inside its guarded read.
                }
            }

            stop.Cancel();
            reader.Join();
            writer.Dispose();
        }

        Assert.Null(unexpected);
        SegmentedBuffers.AssertBalanced(pool);
        TestContext.Current.TestOutputHelper?.WriteLine($"GetReadOnlySequence calls told of the other thread: {told}");
    }

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
