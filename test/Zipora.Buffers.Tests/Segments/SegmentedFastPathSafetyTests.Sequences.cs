using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;

#pragma warning disable CA1031

namespace Zipora.Buffers.Tests;

/// <summary>
/// GetReadOnlySequence without the guard: the sequence is built from one quiet read of the chain, and the
/// <see cref="ReadOnlySequence{T}"/> constructor, which checks the segments again, must not turn a racing dispose or
/// a misusing thread into an exception other than the documented ones.
/// </summary>
public sealed partial class SegmentedFastPathSafetyTests
{
    /// <summary>
    /// A dispose racing a loop of GetReadOnlySequence: the loop ends with <see cref="ObjectDisposedException"/> and
    /// nothing else, every block goes back once, and every one-segment sequence it got has the writer's whole length
    /// (no torn read: a one-segment sequence's length is its own two indexes; a longer one's is read from its segments
    /// when asked, which a dispose since may have given to another buffer, as documented).
    /// </summary>
    [Theory]
    [InlineData(10)]
    [InlineData(4096)]
    [InlineData(20_000)]
    public void ADisposeRacingTheQuietGetReadOnlySequenceOnlyThrowsDisposedAndNeverGivesATornSequence(int written)
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 4096 };
        var seen = new ConcurrentDictionary<Type, int>();
        Exception? firstUnexpected = null;
        int torn = 0;
        for (int round = 0; round < 300; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            writer.Write(SegmentedBuffers.Filled(written, 5));
            using var start = new Barrier(2);
            Thread reader = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 20_000; i++)
                    {
                        ReadOnlySequence<byte> data = writer.GetReadOnlySequence();
                        if (data.IsSingleSegment && data.Length != written)
                        {
                            Interlocked.Increment(ref torn);
                        }
                    }
                }
                catch (Exception error)
                {
                    seen.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
                    if (error is not ObjectDisposedException)
                    {
                        Interlocked.CompareExchange(ref firstUnexpected, error, null);
                    }
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 30);
            writer.Dispose();
            reader.Join();
            Assert.Throws<ObjectDisposedException>(() => writer.GetReadOnlySequence());
        }

        Assert.Equal(0, torn);
        Assert.True(firstUnexpected is null, $"only ObjectDisposedException may be thrown; first other: {firstUnexpected}");
        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>
    /// One thread loops GetReadOnlySequence while another writes, consumes, resets and grows the writer (misuse): the
    /// reading thread is told with <see cref="InvalidOperationException"/> or gets a sequence, never another exception
    /// (what the sequence holds may change under it as the other thread consumes: it is valid only until then).
    /// </summary>
    [Fact]
    public void GetReadOnlySequenceAgainstWritesConsumesAndResetsOnAnotherThreadIsToldOrAnswers()
    {
        var readerSaw = new ConcurrentDictionary<Type, int>();
        Exception? firstUnexpected = null;
        Exception? misuserUnexpected = null;
        long answers = 0;
        RaceAMisusingThread(
            (writer, step) =>
            {
                _ = writer.GetReadOnlySequence();
                Interlocked.Increment(ref answers);
            },
            error =>
            {
                readerSaw.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
                if (error is not InvalidOperationException)
                {
                    Interlocked.CompareExchange(ref firstUnexpected, error, null);
                }
            },
            error =>
            {
                // Told of the reading thread's call (or the writer is full), or an advance over memory a racing call made
                // stale, refused: the misuse this test makes. Anything else fails the test.
                if (error is not (InvalidOperationException or ArgumentOutOfRangeException))
                {
                    Interlocked.CompareExchange(ref misuserUnexpected, error, null);
                }
            });

        TestContext.Current.TestOutputHelper?.WriteLine($"{answers} answers; {string.Join(", ", readerSaw)}");
        Assert.True(firstUnexpected is null, $"the reading thread may only be told of the misuse; first other: {firstUnexpected}");
        Assert.True(misuserUnexpected is null, $"the misusing thread got an undocumented exception: {misuserUnexpected}");
        Assert.True(answers > 0, "no call was answered: the race was not run");
    }

    /// <summary>
    /// The quiet read is one state of the writer, never a mix of two: another thread (misuse) moves the writer between
    /// states that all hold 0 or 100 bytes (100 written, then consumed, in the same segment), so a one-segment sequence
    /// whose start came from one state and end from another holds some other length.
    /// </summary>
    [Fact]
    public void TheQuietGetReadOnlySequenceNeverMixesTwoStatesOfTheWriter()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1 << 20, MaxSegmentSize = 1 << 20 };
        using var writer = new SegmentedBufferWriter(options);
        byte[] hundred = new byte[100];
        long mixed = 0;
        long answers = 0;
        string? firstMixed = null;
        Exception? firstUnexpected = null;
        bool stop = false;
        using var start = new Barrier(2);
        Thread reader = SegmentedBuffers.Started(() =>
        {
            start.SignalAndWait();
            while (!Volatile.Read(ref stop))
            {
                try
                {
                    ReadOnlySequence<byte> data = writer.GetReadOnlySequence();
                    answers++;
                    if (data.IsSingleSegment && data.Length is not (0 or 100))
                    {
                        mixed++;
                        firstMixed ??= $"{data.Length} bytes from {data.Start.GetInteger()} to {data.End.GetInteger()}";
                    }
                }
                catch (InvalidOperationException)
                {
                    // Told of the other thread's call: the misuse this test makes.
                }
                catch (Exception error)
                {
                    firstUnexpected ??= error;
                }
            }
        });
        start.SignalAndWait();

        // Two seconds: the window between the read of a start and that of an end is a few instructions wide, and one
        // second caught a reader without the check after the read 3 to 32 times.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; clock.ElapsedMilliseconds < 2000; i++)
        {
            try
            {
                if (i % 5000 == 0)
                {
                    // Back to the segment's start now and then, so the 1 MB segment never fills.
                    writer.Reset();
                }
                else if (writer.Length == 0)
                {
                    writer.Write(hundred);
                }
                else
                {
                    writer.Consume(writer.Length);
                }
            }
            catch (InvalidOperationException)
            {
                // Told of the reading thread's guarded call.
            }
        }

        Volatile.Write(ref stop, true);
        reader.Join();
        Assert.True(firstUnexpected is null, $"only InvalidOperationException may be thrown: {firstUnexpected}");
        Assert.True(mixed == 0, $"{mixed} of {answers} sequences mixed two states; first: {firstMixed}");
        Assert.True(answers > 1000, $"only {answers} answers: the race was not run");
    }
}
