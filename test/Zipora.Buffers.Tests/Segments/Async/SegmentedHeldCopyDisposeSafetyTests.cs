using System;
using System.Buffers;
using System.Threading;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.SegmentedBuffers;

// Synchronous waits on purpose: the copy is held on one thread while the dispose and the renters run on others.
#pragma warning disable xUnit1031

namespace Zipora.Buffers.Tests;

/// <summary>
/// A copy out of a buffer held inside a slow destination (a socket applying backpressure), the buffer disposed from
/// another thread meanwhile, and other threads renting the same pool's blocks as fast as they can: the promise is
/// that the pending copy keeps the buffer's segments until it leaves. The destination must receive the buffer's own
/// bytes, unchanged while held; no renter may see its block written; every block goes back once.
/// </summary>
public sealed class SegmentedHeldCopyDisposeSafetyTests
{
    private const int Size = 64 * 1024;
    private const int Segment = 4096;
    private const byte Mine = 0x5A;
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    public static TheoryData<string> Copies => ["writer CopyToAsync", "stream CopyToAsync", "writer CopyTo", "stream CopyTo", "stream WriteTo"];

    [Theory]
    [MemberData(nameof(Copies))]
    public void ACopyHeldByItsDestinationWhileTheBufferIsDisposedSendsOnlyTheBuffersBytesAndReturnsEachBlockOnce(string copy)
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Segment, MaxSegmentSize = Segment };
        using var destination = new HeldDestinationStream();
        IDisposable buffer;
        Task pending;
        using (var stampers = new PoolStampers(pool, options, Segment))
        {
            (buffer, pending) = Start(copy, options, destination);
            Assert.True(destination.WaitEntered(s_wait), "the copy never reached its destination");

            // The dispose from another thread, while the copy is held inside the destination.
            Task.Run(buffer.Dispose, TestContext.Current.CancellationToken).Wait(TestContext.Current.CancellationToken);
            long rentsBefore = stampers.Rents;
            SpinWait.SpinUntil(() => stampers.Rents > rentsBefore + 200, s_wait);
            destination.Release();
            Assert.True(pending.Wait(s_wait), "the copy did not complete once released");
            Assert.Equal(0, stampers.Broken);
        }

        Assert.Equal(0, destination.ChangedWhileHeld);
        byte[] sent = destination.Received.ToArray();
        Assert.Equal(Size, sent.Length);
        Assert.False(sent.AsSpan().ContainsAnyExcept(Mine), "the copy sent bytes that are not the buffer's");
        Assert.Throws<ObjectDisposedException>(() => Touch(buffer));
        AssertBalanced(pool);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ACopyCancelledWhileHeldAndDisposedIsCancelledAndReturnsEachBlockOnce(bool stream)
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Segment, MaxSegmentSize = Segment };
        using var destination = new HeldDestinationStream();
        using var cancellation = new CancellationTokenSource();
        IDisposable buffer;
        Task pending;
        if (stream)
        {
            var source = new SegmentedMemoryStream(options);
            source.Write(Filled(Size, Mine));
            source.Position = 0;
            (buffer, pending) = (source, source.CopyToAsync(destination, cancellation.Token));
        }
        else
        {
            var source = new SegmentedBufferWriter(options);
            source.Write(Filled(Size, Mine));
            (buffer, pending) = (source, source.CopyToAsync(destination, cancellation.Token).AsTask());
        }

        Assert.True(destination.WaitEntered(s_wait));
        await Task.Run(buffer.Dispose, TestContext.Current.CancellationToken);
        await Task.Run(cancellation.Cancel, TestContext.Current.CancellationToken);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        Assert.True(pending.IsCanceled, $"the copy ended {pending.Status}, not cancelled");
        Assert.Equal(0, destination.Received.Length);
        AssertBalanced(pool);
    }

    [Theory]
    [InlineData("writer CopyToAsync")]
    [InlineData("stream CopyToAsync")]
    public void ACopyHeldWhileItsPoolAndThenItsBufferAreDisposedSendsTheBuffersBytesAndLeavesNothingInUse(string copy)
    {
        var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Segment, MaxSegmentSize = Segment };
        using var destination = new HeldDestinationStream();
        (IDisposable buffer, Task pending) = Start(copy, options, destination);
        Assert.True(destination.WaitEntered(s_wait));

        // The pool goes first (an app shutting down), then the buffer, both from other threads, while the copy waits:
        // a disposed pool's rented blocks stay valid until returned, so the copy still reads the buffer's own bytes.
        Task.Run(pool.Dispose, TestContext.Current.CancellationToken).Wait(TestContext.Current.CancellationToken);
        Task.Run(buffer.Dispose, TestContext.Current.CancellationToken).Wait(TestContext.Current.CancellationToken);
        destination.Release();
        Assert.True(pending.Wait(s_wait));

        Assert.Equal(0, destination.ChangedWhileHeld);
        Assert.Equal(Size, destination.Received.Length);
        Assert.False(destination.Received.ToArray().AsSpan().ContainsAnyExcept(Mine));
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
    }

    [Fact]
    public async Task ADestinationThatDisposesItsSourceAtItsFirstWriteStillReceivesEveryByteOfIt()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = Segment, MaxSegmentSize = Segment };

        // Into a buffer writer, synchronously: the dispose comes from inside the copy, on its own thread.
        var writer = new SegmentedBufferWriter(options);
        writer.Write(Filled(Size, Mine));
        var into = new SourceDisposingBufferWriter(writer);
        writer.CopyTo(into);
        Assert.Equal(Size, into.WrittenSpan.Length);
        Assert.False(into.WrittenSpan.ContainsAnyExcept(Mine));
        Assert.Throws<ObjectDisposedException>(() => writer.ToArray());

        // Into a stream, asynchronously, the dispose coming from the destination's continuation.
        var stream = new SegmentedMemoryStream(options);
        stream.Write(Filled(Size, Mine));
        stream.Position = 0;
        var received = new System.IO.MemoryStream();
        await stream.CopyToAsync(new SourceDisposingStream(stream, received), TestContext.Current.CancellationToken);
        Assert.Equal(Size, received.Length);
        Assert.False(received.ToArray().AsSpan().ContainsAnyExcept(Mine));
        Assert.False(stream.CanRead);
        AssertBalanced(pool);
    }

    private static (IDisposable Buffer, Task Pending) Start(string copy, SegmentedBufferOptions options, HeldDestinationStream destination)
    {
        if (copy.StartsWith("writer", StringComparison.Ordinal))
        {
            var writer = new SegmentedBufferWriter(options);
            writer.Write(Filled(Size, Mine));
            return (writer, copy.EndsWith("Async", StringComparison.Ordinal)
                ? writer.CopyToAsync(destination, TestContext.Current.CancellationToken).AsTask()
                : Task.Factory.StartNew(() => writer.CopyTo(destination), TestContext.Current.CancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default));
        }

        var stream = new SegmentedMemoryStream(options);
        stream.Write(Filled(Size, Mine));
        stream.Position = 0;
        return (stream, copy switch
        {
            "stream CopyToAsync" => stream.CopyToAsync(destination, TestContext.Current.CancellationToken),
            "stream CopyTo" => Task.Factory.StartNew(() => stream.CopyTo(destination), TestContext.Current.CancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default),
            _ => Task.Factory.StartNew(() => stream.WriteTo(destination), TestContext.Current.CancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default),
        });
    }

    private static void Touch(IDisposable buffer)
    {
        if (buffer is SegmentedBufferWriter writer)
        {
            _ = writer.ToArray();
        }
        else
        {
            _ = ((SegmentedMemoryStream)buffer).ReadByte();
        }
    }
}
