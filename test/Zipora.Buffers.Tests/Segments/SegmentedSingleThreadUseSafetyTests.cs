using System;
using System.Buffers;
using System.Diagnostics;
using System.IO;

#pragma warning disable xUnit1031, CA2012

namespace Zipora.Buffers.Tests;

/// <summary>
/// The segmented writer and stream used on one thread as documented, against the fixes of the first review (the guard,
/// the generation check, the leak count, the tail no longer rewound, the 2 GB MaxLength): re-entrant copies, a failing
/// GetMemory after a sequence was taken, stale positions, queues of small messages, walks that must stay linear, and
/// random call sequences against MemoryStream. Each test states the promise it checks; a failing one is a bug report.
/// </summary>
public sealed partial class SegmentedSingleThreadUseSafetyTests
{
    private const byte Mine = 0x5A;

    // ---------------------------------------------------------------------------------------------------------------
    // The guard is not re-entrant: one thread calling back into the buffer from inside a copy is told it is "used by
    // two threads at once".
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AStreamCopiedIntoItselfDoesAsMemoryStreamDoesInsteadOfClaimingTwoThreads()
    {
        byte[] data = SegmentedBuffers.Filled(100, Mine);
        using var model = new MemoryStream();
        model.Write(data);
        model.Position = 40;
        model.CopyTo(model);

        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { InitialSegmentSize = 16, MaxSegmentSize = 64 });
        stream.Write(data);
        stream.Position = 40;
        Exception? error = Record.Exception(() => stream.CopyTo(stream));

        Assert.True(error is null, $"CopyTo(itself) on one thread threw {error?.GetType().Name}: \"{error?.Message}\" (MemoryStream appends its last 60 bytes); the position moved to {stream.Position} and the length is {stream.Length}.");
        Assert.Equal(model.ToArray(), stream.ToArray());
        Assert.Equal(model.Position, stream.Position);
    }

    [Fact]
    public void AStreamReadBackByItsCopyDestinationOnTheSameThreadIsNotToldItIsUsedByTwoThreads()
    {
        // A destination that checks what it is given against the source (a verifying tee): one thread throughout.
        byte[] data = SegmentedBuffers.Filled(100, Mine);
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { InitialSegmentSize = 16, MaxSegmentSize = 64 });
        stream.Write(data);
        stream.Position = 0;
        var destination = new CallbackStream(_ => _ = stream.ToArray());

        Exception? error = Record.Exception(() => stream.CopyTo(destination));

        Assert.False(
            error is InvalidOperationException && error.Message.Contains("two threads", StringComparison.Ordinal),
            $"One thread, no concurrency, and yet: {error?.GetType().Name}: \"{error?.Message}\"");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // An empty tail replaced by a larger GetMemory: the sequence taken before (documented valid until a consume, a
    // reset or a dispose) ends in that segment, which went back to the segment cache.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void ASequenceTakenBeforeALargerGetMemoryThatFailsStillReadsTheWritersData()
    {
        var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16 };
        using var writer = new SegmentedBufferWriter(options);
        byte[] data = SegmentedBuffers.Filled(16, Mine);
        writer.Write(data);

        // The tail is full: "any" memory appends an empty segment, which the sequence then ends in.
        _ = writer.GetMemory();
        ReadOnlySequence<byte> sequence = writer.GetReadOnlySequence();
        Assert.Equal(16, sequence.Length);

        // A larger request replaces that empty segment: it lets go of it first, then rents, and the rent fails (the pool
        // was disposed: the writer outliving its pool is a case round 1 made fail cleanly).
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => writer.GetMemory(10_000));
        Assert.Equal(16, writer.Length);

        // Another writer on this thread takes the segment object the failed call let go of, behind one of its own.
        using var otherPool = new TieredMemoryPool();
        using var other = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = otherPool, InitialSegmentSize = 16, MaxSegmentSize = 16 });
        other.Write(SegmentedBuffers.Filled(48, 0xBB));

        long length = -1;
        byte[]? read = null;
        Exception? error = Record.Exception(() =>
        {
            length = sequence.Length;
            read = sequence.ToArray();
        });
        Assert.True(
            error is null && length == 16 && read is not null && read.AsSpan().SequenceEqual(data),
            $"A sequence over 16 unconsumed bytes, after a failed GetMemory: Length {length}, read {(read is null ? "nothing" : $"{read.Length} bytes")}, error {error?.GetType().Name}: {error?.Message}");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Stale positions: round 1 made a position from before a full consume refused. A consume that releases a segment
    // puts the segment object in the thread's cache, and this writer's next segment is that same object.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AdvanceToAPositionInASegmentAConsumeReleasedNeverConsumesMoreThanTheWriterHolds()
    {
        // The released segment object comes back from the thread's cache as this writer's next segment, so the stale
        // position names a live segment again: the writer documents positions as valid only until the data before
        // them is consumed, and cannot tell this one apart. What it must never do is consume past its own data.
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16 });
        byte[] first = new byte[32];
        for (int i = 0; i < first.Length; i++)
        {
            first[i] = (byte)i;
        }

        writer.Write(first);
        SequencePosition stale = writer.GetReadOnlySequence().GetPosition(8);
        writer.Consume(16);
        writer.Write(SegmentedBuffers.Filled(16, 0xEE));
        Assert.Equal(32, writer.Length);

        Exception? error = Record.Exception(() => writer.AdvanceTo(stale));
        Assert.True(error is null or ArgumentOutOfRangeException, error?.ToString());
        long left = writer.Length;
        Assert.InRange(left, 0, 32);
        byte[] expected = [.. first[16..], .. SegmentedBuffers.Filled(16, 0xEE)];
        Assert.Equal(expected[(int)(32 - left)..], writer.ToArray());
        Assert.Equal(pool.GetStatistics().Segmented.BytesHeld, pool.GetStatistics().BytesInUse);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The queue the writer documents itself as ("consumed from the front, it is a FIFO queue of bytes"): with the tail
    // no longer rewound on a full consume, small messages walk the growth up to MaxSegmentSize.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AWriterUsedAsAQueueOfSmallMessagesDoesNotGrowItsHoldingToTheLargestSegment()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        byte[] message = SegmentedBuffers.Filled(100, Mine);
        long most = 0;
        long rents = 0;
        long segmentsSeen = 0;
        for (int i = 0; i < 100_000; i++)
        {
            writer.Write(message);
            writer.Consume(writer.Length);
            if (i % 1000 == 0)
            {
                most = Math.Max(most, pool.GetStatistics().BytesInUse);
            }
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        most = Math.Max(most, statistics.BytesInUse);
        rents = statistics.Segmented.BytesHeld;
        segmentsSeen = writer.GetReadOnlySequence().Length;
        TestContext.Current.TestOutputHelper?.WriteLine($"most in use {most}, held now {rents}, length {segmentsSeen}");

        // Never more than 100 bytes queued: the first 4 KB segment (the initial size) is all a queue needs.
        Assert.True(most <= 2 * SegmentedBufferOptions.DefaultInitialSegmentSize, $"A queue that never held more than 100 bytes holds {most} bytes of the pool.");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Performance cliffs: walks from the head.
    // ---------------------------------------------------------------------------------------------------------------

    // A guard against quadratic walks, not a speed goal (those live in BenchmarkDotNet): linear, each case takes under
    // 100 ms here; quadratic, it did not finish in 3 s. The bound leaves room for a loaded 2-core CI machine.
    private const int QuadraticBound = 2_000;

    [Fact]
    public void RandomReadsOfAStreamOfManySmallSegmentsStayFast()
    {
        const int Segments = 100_000;
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1, MaxSegmentSize = 1 });
        // The pool's smallest block is 16 bytes: a segment of "1 byte" holds 16.
        byte[] data = new byte[Segments * 16];
        new Random(5).NextBytes(data);
        stream.Write(data);
        int segments = 0;
        foreach (ReadOnlyMemory<byte> _ in stream.GetReadOnlySequence())
        {
            segments++;
        }

        // Backwards, one byte at a time (a reader of a trailer, a format read from its end): each read starts before
        // the cursor.
        var clock = Stopwatch.StartNew();
        int reads = 0;
        while (reads < 20_000)
        {
            long position = stream.Length - 1 - (reads * 7 % stream.Length);
            stream.Position = position;
            Assert.Equal(data[position], stream.ReadByte());
            reads++;
            if (clock.Elapsed > TimeSpan.FromSeconds(3))
            {
                break;
            }
        }

        clock.Stop();
        TestContext.Current.TestOutputHelper?.WriteLine($"{segments} segments, {reads} reads in {clock.ElapsedMilliseconds} ms");
        Assert.True(reads == 20_000 && clock.ElapsedMilliseconds < QuadraticBound, $"{reads} single-byte reads before the cursor of a {stream.Length}-byte stream in {segments} segments took {clock.ElapsedMilliseconds} ms (a MemoryStream takes well under 1 ms).");
    }

    [Fact]
    public void AskingForAnyMemoryThenForMoreStaysLinearInTheSegmentsHeld()
    {
        // The common pattern "take what is there, and ask for more if it is too short": each time the tail is full, the
        // first call appends an empty segment and the second replaces it, finding the one before it from the head.
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16 });
        var clock = Stopwatch.StartNew();
        int writes = 0;
        while (writes < 40_000 && clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            Span<byte> span = writer.GetSpan();
            if (span.Length < 32)
            {
                span = writer.GetSpan(32);
            }

            span[..32].Fill(Mine);
            writer.Advance(32);
            writes++;
        }

        clock.Stop();
        TestContext.Current.TestOutputHelper?.WriteLine($"{writes} writes in {clock.ElapsedMilliseconds} ms");
        Assert.True(writes == 40_000 && clock.ElapsedMilliseconds < QuadraticBound, $"{writes} writes of 32 bytes (GetSpan(), then GetSpan(32)) took {clock.ElapsedMilliseconds} ms: quadratic in the segments held.");
        Assert.Equal(writes * 32L, writer.Length);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The stream against MemoryStream: random sequences of calls, a dispose among them.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void RandomCallSequencesWithADisposeAmongThemMatchMemoryStream()
    {
        var clock = Stopwatch.StartNew();
        for (int seed = 0; seed < 3000 && clock.Elapsed < TimeSpan.FromSeconds(3); seed++)
        {
            var random = new Random(seed);
            using var model = new MemoryStream();
            using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { InitialSegmentSize = 16, MaxSegmentSize = 32 });
            var log = new System.Text.StringBuilder();
            int steps = random.Next(1, 40);
            int disposeAt = random.Next(0, 3) == 0 ? random.Next(0, steps) : -1;
            for (int step = 0; step < steps; step++)
            {
                if (step == disposeAt)
                {
                    model.Dispose();
                    stream.Dispose();
                    log.Append("Dispose; ");
                }

                int op = random.Next(11);
                int n = random.Next(0, 80);
                long where = random.Next(-5, 120);
                var origin = (SeekOrigin)random.Next(3);
                byte[] data = new byte[n];
                random.NextBytes(data);
                log.Append(op switch
                {
                    0 => $"Write({n})",
                    1 => "WriteByte",
                    2 => $"Read({n})",
                    3 => "ReadByte",
                    4 => $"Seek({where - 60}, {origin})",
                    5 => $"Position={where}",
                    6 => $"SetLength({where})",
                    7 => "CopyTo",
                    8 => "ToArray",
                    9 => "Length",
                    _ => $"WriteAsync({n})",
                }).Append("; ");
                (object? Result, Type? Error) expected = Run(model, op, n, where, origin, data);
                (object? Result, Type? Error) actual = Run(stream, op, n, where, origin, data);
                if (!model.CanRead)
                {
                    // Disposed: the stream documents ObjectDisposedException for every call (MemoryStream's SetLength
                    // says NotSupported, its ToArray still answers).
                    Assert.True(actual.Error == typeof(ObjectDisposedException), $"seed {seed}: {log}\nSegmentedMemoryStream: {Show(actual)}");
                    continue;
                }

                Assert.True(
                    Equal(expected, actual),
                    $"seed {seed}: {log}\nMemoryStream: {Show(expected)}; SegmentedMemoryStream: {Show(actual)}");
                Assert.True(model.Position == stream.Position && model.Length == stream.Length, $"seed {seed}: {log}\nMemoryStream at {model.Position} of {model.Length}; SegmentedMemoryStream at {stream.Position} of {stream.Length}");
            }

            if (model.CanRead)
            {
                Assert.Equal(model.ToArray(), stream.ToArray());
            }
        }
    }
}
