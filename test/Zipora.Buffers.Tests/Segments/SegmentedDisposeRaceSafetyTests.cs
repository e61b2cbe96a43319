using System;
using System.Buffers;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.SegmentedBuffers;

// Synchronous waits on purpose: the racing tests must stay on one thread (its segment and block caches are the
// point).
#pragma warning disable xUnit1031, CA2012

namespace Zipora.Buffers.Tests;

/// <summary>
/// A dispose racing the segmented writer's and stream's calls that touch segment memory (the documentation says
/// Dispose "may come from any thread at any time"): the racing call fails only with ObjectDisposedException, and never
/// writes into, reads from or sends another buffer's block. Each test states the promise it checks; a failing one is a
/// bug report.
/// </summary>
public sealed class SegmentedDisposeRaceSafetyTests
{
    private const byte Mine = 0x5A;
    private const byte Theirs = 0xBB;

    // ---------------------------------------------------------------------------------------------------------------
    // A dispose racing a stream's Write: the write's copy runs outside the guard, into a block the dispose may already
    // have given back and the pool handed to someone else.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void ADisposeRacingAStreamWriteNeverWritesIntoABlockRentedAfterIt()
    {
        const int Size = 1 << 20;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Size, MaxSegmentSize = Size };
        byte[] payload = Filled(Size - 1, Mine);
        int corrupted = 0;
        int sameBlock = 0;
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3) && corrupted == 0)
        {
            rounds++;
            var stream = new SegmentedMemoryStream(options);
            stream.WriteByte(1);
            nint address = AddressOf(stream.GetReadOnlySequence().First);
            IMemoryOwner<byte>? next = null;

            // Whatever the write says is another test's business: this one looks at the next renter's bytes.
            _ = RaceDispose(stream, () => stream.Write(payload), rounds, () =>
            {
                next = pool.Rent(Size);
                next.Memory.Span.Fill(Theirs);
            });
            using (next)
            {
                sameBlock += AddressOf(next!.Memory) == address ? 1 : 0;
                corrupted += next.Memory.Span.IndexOfAnyExcept(Theirs) >= 0 ? 1 : 0;
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"rounds {rounds}, same block rented again {sameBlock}, corrupted {corrupted}");
        Assert.True(corrupted == 0, $"A Write racing Dispose wrote into a block the pool had handed to another renter ({corrupted} of {rounds} rounds).");
    }

    [Fact]
    public void ADisposeRacingAStreamWriteNeverGrowsAStreamCreatedAfterIt()
    {
        const int Size = 1 << 20;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Size, MaxSegmentSize = Size };
        byte[] payload = Filled(Size - 1, Mine);
        long wrongLength = -1;
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3) && wrongLength < 0)
        {
            rounds++;
            var stream = new SegmentedMemoryStream(options);
            stream.WriteByte(1);

            // A new stream on this thread takes the segment object and the block the dispose just let go of.
            SegmentedMemoryStream? other = null;
            _ = RaceDispose(stream, () => stream.Write(payload), rounds, () =>
            {
                other = new SegmentedMemoryStream(options);
                other.WriteByte(7);
            });
            using (other)
            {
                wrongLength = other!.Length != 1 ? other.Length : wrongLength;
            }
        }

        Assert.True(wrongLength < 0, $"A Write racing Dispose on another stream changed this new stream's Length from 1 to {wrongLength} (round {rounds}).");
    }

    [Fact]
    public void ADisposeRacingAStreamWriteFailsOnlyWithObjectDisposedException()
    {
        const int Size = 1 << 20;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        byte[] payload = Filled(Size, Mine);
        Exception? unexpected = null;
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3) && unexpected is null)
        {
            rounds++;
            var stream = new SegmentedMemoryStream(options);
            stream.Write(payload);
            stream.Position = 0;

            // Overwriting from the start walks 256 segments; ObjectDisposedException is the documented outcome.
            Exception? error = RaceDispose(stream, () => stream.Write(payload), rounds);
            unexpected = error is ObjectDisposedException ? null : error;
        }

        Assert.True(unexpected is null, $"A Write racing Dispose threw {unexpected?.GetType().Name}, not ObjectDisposedException: {unexpected}");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // A dispose racing a read: the read walks segments outside the guard.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void ADisposeRacingAStreamReadFailsOnlyWithObjectDisposedAndNeverReadsAnotherStreamsBytes()
    {
        const int Size = 1 << 20;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        byte[] mine = Filled(Size, Mine);
        byte[] theirs = Filled(Size, Theirs);
        byte[] destination = new byte[Size];
        string? failure = null;
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3) && failure is null)
        {
            rounds++;
            var stream = new SegmentedMemoryStream(options);
            stream.Write(mine);
            stream.Position = 0;
            Array.Clear(destination);
            int read = -1;
            SegmentedMemoryStream? other = null;
            Exception? error = RaceDispose(stream, () => read = stream.Read(destination), rounds, () =>
            {
                other = new SegmentedMemoryStream(options);
                other.Write(theirs);
            });
            other!.Dispose();
            if (error is not null and not ObjectDisposedException)
            {
                failure = $"Read racing Dispose threw {error.GetType().Name}, not ObjectDisposedException: {error.Message}";
            }
            else if (error is null && destination.AsSpan(0, read).IndexOfAnyExcept(Mine) >= 0)
            {
                failure = $"Read racing Dispose returned {read} bytes, {destination.AsSpan(0, read).Count(Theirs)} of them another stream's";
            }
        }

        Assert.True(failure is null, $"round {rounds}: {failure}");
    }

    [Fact]
    public void ADisposeRacingWriterToArrayNeverReturnsAnotherWritersBytes()
    {
        const int Size = 1 << 20;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        byte[] mine = Filled(Size, Mine);
        byte[] theirs = Filled(Size, Theirs);
        string? failure = null;
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3) && failure is null)
        {
            rounds++;
            var writer = new SegmentedBufferWriter(options);
            writer.Write(mine);
            byte[]? copy = null;
            SegmentedBufferWriter? other = null;
            Exception? error = RaceDispose(writer, () => copy = writer.ToArray(), rounds, () =>
            {
                other = new SegmentedBufferWriter(options);
                other.Write(theirs);
            });
            other!.Dispose();
            if (error is not null and not ObjectDisposedException)
            {
                failure = $"ToArray racing Dispose threw {error.GetType().Name}, not ObjectDisposedException: {error.Message}";
            }
            else if (copy is not null && copy.AsSpan().IndexOfAnyExcept(Mine) >= 0)
            {
                failure = $"ToArray racing Dispose returned {copy.AsSpan().Count(Theirs)} bytes of another writer's data";
            }
        }

        Assert.True(failure is null, $"round {rounds}: {failure}");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // An asynchronous copy still running when its source is disposed (a MemoryStream's array outlives its dispose, so
    // the same code works with MemoryStream): the copy must fail or send the source's bytes, never another buffer's.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void ACopyToAsyncPendingWhenTheStreamIsDisposedNeverSendsAnotherStreamsBytes()
    {
        const int Size = 64 * 1024;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        var source = new SegmentedMemoryStream(options);
        source.Write(Filled(Size, Mine));
        source.Position = 0;
        var destination = new GatedStream();

        Task copy = source.CopyToAsync(destination);
        Assert.False(copy.IsCompleted);
        source.Dispose();
        using var other = new SegmentedMemoryStream(options);
        other.Write(Filled(Size, Theirs));
        destination.Open();

        Exception? error = Record.Exception(() => copy.GetAwaiter().GetResult());
        byte[] sent = destination.Received.ToArray();
        Assert.True(sent.AsSpan().IndexOf(Theirs) < 0, $"The pending copy sent {sent.AsSpan().Count(Theirs)} bytes of another stream ({sent.Length} sent in all; error: {error?.GetType().Name}).");
        Assert.True(error is ObjectDisposedException || sent.Length == Size, $"The copy neither completed ({sent.Length} of {Size} bytes sent) nor failed with ObjectDisposedException ({error?.GetType().Name}: {error?.Message}).");
    }

    [Fact]
    public void ACopyToAsyncPendingWhenTheWriterIsDisposedNeverSendsAnotherWritersBytes()
    {
        const int Size = 64 * 1024;
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        var writer = new SegmentedBufferWriter(options);
        writer.Write(Filled(Size, Mine));
        var destination = new GatedStream();

        Task copy = writer.CopyToAsync(destination).AsTask();
        Assert.False(copy.IsCompleted);
        writer.Dispose();
        using var other = new SegmentedBufferWriter(options);
        other.Write(Filled(Size, Theirs));
        destination.Open();

        Exception? error = Record.Exception(() => copy.GetAwaiter().GetResult());
        byte[] sent = destination.Received.ToArray();
        Assert.True(sent.AsSpan().IndexOf(Theirs) < 0, $"The pending copy sent {sent.AsSpan().Count(Theirs)} bytes of another writer ({sent.Length} sent in all; error: {error?.GetType().Name}).");
        Assert.True(error is ObjectDisposedException || sent.Length == Size, $"The copy neither completed ({sent.Length} of {Size} bytes sent) nor failed with ObjectDisposedException ({error?.GetType().Name}: {error?.Message}).");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers.
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Runs <paramref name="use"/> on another thread and disposes <paramref name="target"/> while it may still run (a
    /// spin that changes with <paramref name="round"/> moves the dispose along the call), then runs
    /// <paramref name="afterDispose"/> here, before the call is over; returns what <paramref name="use"/> threw.
    /// </summary>
    internal static Exception? RaceDispose(IDisposable target, Action use, int round, Action? afterDispose = null)
    {
        int started = 0;
        Exception? error = null;
        Thread user = SegmentedBuffers.Started(() =>
        {
            Volatile.Write(ref started, 1);
            try
            {
                use();
            }
            catch (Exception exception)
            {
                error = exception;
            }
        });
        while (Volatile.Read(ref started) == 0)
        {
            Thread.SpinWait(1);
        }

        Thread.SpinWait(round % 64 * 20);
        target.Dispose();
        afterDispose?.Invoke();
        user.Join();
        return error;
    }

    /// <summary>A destination whose first asynchronous write waits for <see cref="Open"/>; it copies what it is given at once.</summary>
    private sealed class GatedStream : Stream
    {
        private readonly TaskCompletionSource _gate = new();
        private int _writes;

        public MemoryStream Received { get; } = new();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Open() => _gate.SetResult();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Received.Write(buffer.Span);
            return _writes++ == 0 ? new ValueTask(_gate.Task) : ValueTask.CompletedTask;
        }

        public override void Write(byte[] buffer, int offset, int count) => Received.Write(buffer, offset, count);

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
