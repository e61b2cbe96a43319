using System;
using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="ReadOnlySequence{T}"/> taken from a writer and read on another thread while the owner consumes,
/// advances, resets and disposes (the documentation allows stale data then): the reader may see stale bytes or get
/// the exceptions a sequence over released memory gives (<see cref="ObjectDisposedException"/> from a returned block,
/// the sequence's own <see cref="ArgumentException"/>, its out-of-range kind included, or
/// <see cref="InvalidOperationException"/> for segments that moved), never another exception, never a hang; the
/// owner's own calls keep working on its own data, no renter of the pool finds its block written, and every block
/// goes back once.
/// </summary>
public sealed class SegmentedStaleSequenceReaderSafetyTests
{
    private const int Segment = 4096;

    // Stale sequences whose length read negative (shown in the output: a consumer's ToArray would throw OverflowException).
    private static long s_negativeLengths;

    [Fact]
    public void AReaderOfAStaleSequenceSeesStaleBytesOrTheSequencesOwnExceptionsAndNoOneElseIsHarmed()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Segment, MaxSegmentSize = Segment };
        object? published = null;
        int stop = 0;
        Exception? unexpected = null;
        long reads = 0;
        Thread reader = Started(() =>
        {
            while (Volatile.Read(ref stop) == 0)
            {
                if (Volatile.Read(ref published) is not StrongBox<ReadOnlySequence<byte>> box)
                {
                    continue;
                }

                try
                {
                    ReadStale(box.Value);
                }
                catch (Exception exception) when (exception is ObjectDisposedException or ArgumentException or InvalidOperationException)
                {
                    // What a sequence over released or moved segments may throw: its lengths read again between two calls
                    // may differ, so a copy into an array made for the first one is "too short" (ArgumentException).
                }
                catch (Exception exception)
                {
                    unexpected ??= exception;
                }

                Interlocked.Increment(ref reads);
            }
        });

        var random = new Random(7);
        using (var stampers = new PoolStampers(pool, options, Segment))
        {
            var writer = new SegmentedBufferWriter(options);
            var clock = Stopwatch.StartNew();
            try
            {
                for (int round = 0; clock.ElapsedMilliseconds < 1500; round++)
                {
                    byte mine = (byte)(round % 100);
                    int length = random.Next(1, 5 * Segment);
                    writer.Write(Filled(length, mine));
                    ReadOnlySequence<byte> sequence = writer.GetReadOnlySequence();
                    Volatile.Write(ref published, new StrongBox<ReadOnlySequence<byte>>(sequence));
                    Thread.SpinWait(random.Next(200));
                    switch (random.Next(4))
                    {
                        case 0:
                            writer.AdvanceTo(sequence.GetPosition(random.NextInt64(sequence.Length + 1)));
                            break;
                        case 1:
                            writer.Consume(writer.Length);
                            break;
                        case 2:
                            writer.Reset();
                            break;
                        default:
                            writer.Dispose();
                            writer = new SegmentedBufferWriter(options);
                            break;
                    }

                    // The owner's data is its own whatever the reader does: the bytes left are the round's.
                    Assert.False(writer.ToArray().AsSpan().ContainsAnyExcept(mine), "the writer's own data changed");
                    writer.Consume(writer.Length);
                }
            }
            finally
            {
                Volatile.Write(ref stop, 1);
                reader.Join();
                writer.Dispose();
            }

            Assert.Equal(0, stampers.Broken);
        }

        TestContext.Current.SendDiagnosticMessage($"{Interlocked.Read(ref reads)} stale reads, {Interlocked.Read(ref s_negativeLengths)} with a negative length");
        Assert.Null(unexpected);
        Assert.True(Interlocked.Read(ref reads) > 100, "the reader barely ran");
        AssertBalanced(pool);
    }

    /// <summary>Every way a consumer reads a sequence: enumeration, a copy, slices and positions, a SequenceReader.</summary>
    private static void ReadStale(ReadOnlySequence<byte> sequence)
    {
        long sum = 0;
        foreach (ReadOnlyMemory<byte> memory in sequence)
        {
            sum += memory.Span.IndexOf((byte)0xFF);
        }

        // A stale sequence's length comes from its segments' running indexes as they are now: a segment reset or reused
        // since starts at 0 again, so the length may even be negative (then no copy: an array of it would overflow).
        long length = sequence.Length;
        if (length < 0)
        {
            Interlocked.Increment(ref s_negativeLengths);
            return;
        }

        byte[] copy = new byte[length];
        sequence.CopyTo(copy);
        ReadOnlySequence<byte> slice = sequence.Slice(sequence.Length / 3, sequence.Length / 3);
        _ = slice.GetPosition(slice.Length / 2);
        var reader = new SequenceReader<byte>(sequence);
        reader.Advance(sequence.Length / 2);
        _ = reader.TryRead(out byte _);
        GC.KeepAlive(sum);
    }
}
