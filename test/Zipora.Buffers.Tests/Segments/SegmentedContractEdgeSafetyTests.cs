using System;
using System.Buffers;
using System.IO;
using System.Threading;
using static Zipora.Buffers.Tests.SegmentedBuffers;

// Synchronous waits on purpose: the cancelled-token checks read a ValueTask's state once.
#pragma warning disable xUnit1031, CA2012

namespace Zipora.Buffers.Tests;

/// <summary>
/// The segmented writer's and stream's documented contract at its edges: stale positions, the message counts, a
/// throwing owner, hints, maximal lengths, a pool that gives less than asked, a writer outliving its pool, and the
/// other edge cases a misuse must not break.
/// </summary>
public sealed class SegmentedContractEdgeSafetyTests
{
    private const byte Mine = 0x5A;
    private const byte Theirs = 0xBB;

    // ---------------------------------------------------------------------------------------------------------------
    // Stale positions: AdvanceTo documents ArgumentOutOfRangeException for "a position not in the unconsumed data".
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AdvanceToAPositionFromBeforeAFullConsumeIsRefusedNotAppliedToNewData()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write<byte>([1, 2, 3, 4, 5, 6, 7, 8]);
        SequencePosition stale = writer.GetReadOnlySequence().GetPosition(4);
        writer.Consume(8);
        writer.Write<byte>([9, 10, 11, 12, 13, 14, 15, 16]);

        Exception? error = Record.Exception(() => writer.AdvanceTo(stale));
        Assert.Equal(8, writer.Length);
        Assert.IsType<ArgumentOutOfRangeException>(error);
    }

    [Fact]
    public void AdvanceToAPositionFromBeforeAResetStaysWithinTheWritersOwnData()
    {
        // A reset writes the kept segment again from its start, so an old position points into the new data: the
        // writer documents such positions as invalid, and all it may do is consume its own bytes, never more.
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write<byte>([1, 2, 3, 4, 5, 6, 7, 8]);
        SequencePosition stale = writer.GetReadOnlySequence().GetPosition(6);
        writer.Reset();
        writer.Write<byte>([9, 10, 11]);

        Exception? error = Record.Exception(() => writer.AdvanceTo(stale));
        Assert.True(error is null or ArgumentOutOfRangeException, error?.ToString());
        Assert.Equal(3, writer.Length);
        Assert.Equal(new byte[] { 9, 10, 11 }, writer.ToArray());
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Statistics.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AWriterResetAfterEachMessageCountsOneMessagePerResetNotAnExtraOneAtDispose()
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        for (int message = 0; message < 3; message++)
        {
            writer.Write(new byte[100]);
            writer.Reset();
        }

        writer.Dispose();

        // "Messages ended: each Reset and each dispose of a writer or stream that held data": the dispose held none.
        SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
        Assert.Equal(3, statistics.Messages);
        Assert.Equal(3, statistics.MessageSegments);
    }

    [Fact]
    public void AResetOfAnEmptyWriterEndsNoMessage()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[100]);
        writer.Reset();
        writer.Reset();
        writer.Reset();

        // The counters' own rule: "A writer reset or disposed without a byte written sent no message."
        Assert.Equal(1, pool.GetStatistics().Segmented.Messages);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // A pool whose owner throws on dispose: one bad owner must not strand every other segment.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AnOwnerWhoseDisposeThrowsDoesNotStrandTheWritersOtherSegments()
    {
        var pool = new MisbehavingPool { Refuses = static index => index == 0 };
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 });
        writer.Write(new byte[10 * 1024]);
        Assert.Equal(10, pool.Outstanding);

        _ = Record.Exception(writer.Dispose);

        // The first owner refused; the nine others must still go back.
        Assert.Equal(1, pool.Outstanding);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Contract edge cases that must hold (documented behaviour).
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void WriterHintsGetAtLeastWhatTheyAskAndBadCountsAreRefusedWithoutChange()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64 });
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(1));
        Assert.Equal(0, writer.Length);
        Assert.False(writer.GetMemory(0).IsEmpty);
        foreach (int hint in new[] { 0, 1, 15, 16, 17, 63, 64, 65, 4096, 100_000, 3_000_000 })
        {
            Assert.True(writer.GetSpan(hint).Length >= Math.Max(hint, 1), $"hint {hint}");
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => writer.GetMemory(int.MaxValue));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.GetMemory(-1));
        int given = writer.GetMemory().Length;
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(given + 1));
        Assert.Equal(0, writer.Length);
        writer.Advance(given);
        Assert.Equal(given, writer.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Consume(given + 1));
        Assert.Throws<ArgumentException>(() => writer.CopyTo(new byte[given - 1].AsSpan()));
        Assert.Equal(given, writer.Length);
    }

    [Fact]
    public void AWriterLongerThanAnArrayRefusesToArrayClearly()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, MaxLength = long.MaxValue });
        for (int i = 0; i < 3; i++)
        {
            // Untouched native memory: nothing is committed.
            int length = writer.GetMemory(1 << 30).Length;
            writer.Advance(Math.Min(length, 1 << 30));
        }

        Assert.True(writer.Length > Array.MaxLength);
        Assert.Throws<InvalidOperationException>(() => writer.ToArray());
        Assert.Throws<ArgumentException>(() => writer.CopyTo(Span<byte>.Empty));
        writer.Consume(writer.Length - 10);
        Assert.Equal(10, writer.ToArray().Length);
    }

    [Fact]
    public void AStreamAfterDisposeAnswersAsMemoryStreamDoes()
    {
        var model = new MemoryStream();
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions());
        model.Dispose();
        stream.Dispose();

        Assert.Equal(model.CanRead, stream.CanRead);
        Assert.Equal(model.CanSeek, stream.CanSeek);
        Assert.Equal(model.CanWrite, stream.CanWrite);
        Assert.Throws<ObjectDisposedException>(() => stream.Length);
        Assert.Throws<ObjectDisposedException>(() => stream.Position);
        Assert.Throws<ObjectDisposedException>(() => stream.ReadByte());
        Assert.Throws<ObjectDisposedException>(() => stream.WriteByte(1));
        Assert.Throws<ObjectDisposedException>(() => stream.Seek(0, SeekOrigin.Begin));
        Assert.Throws<ObjectDisposedException>(() => stream.SetLength(0));
        Assert.Equal(Record.Exception(model.Flush)?.GetType(), Record.Exception(stream.Flush)?.GetType());
        Assert.Equal(model.FlushAsync().Status, stream.FlushAsync().Status);
        Assert.True(stream.ReadAsync(new byte[1]).AsTask().IsFaulted);
        Assert.True(stream.WriteAsync(new byte[1]).AsTask().IsFaulted);
    }

    [Fact]
    public void AStreamsAsynchronousMembersMatchMemoryStream()
    {
        using var model = new MemoryStream();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { InitialSegmentSize = 16, MaxSegmentSize = 64 });
        byte[] data = new byte[300];
        new Random(3).NextBytes(data);
        model.Write(data);
        stream.Write(data);
        model.Position = stream.Position = 37;

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.True(stream.ReadAsync(new byte[10], cancelled.Token).IsCanceled);
        Assert.True(stream.ReadAsync(new byte[10], 0, 10, cancelled.Token).IsCanceled);
        Assert.True(stream.WriteAsync(new byte[10], cancelled.Token).IsCanceled);
        Assert.True(stream.CopyToAsync(Stream.Null, cancelled.Token).IsCanceled);
        Assert.Equal(37, stream.Position);
        Assert.Equal(300, stream.Length);

        byte[] a = new byte[50];
        byte[] b = new byte[50];
        Assert.Equal(model.EndRead(model.BeginRead(a, 0, 50, null, null)), stream.EndRead(stream.BeginRead(b, 0, 50, null, null)));
        Assert.Equal(a, b);
        stream.EndWrite(stream.BeginWrite(data, 0, 7, null, null));
        model.EndWrite(model.BeginWrite(data, 0, 7, null, null));
        Assert.Equal(model.Position, stream.Position);

        using var copiedModel = new MemoryStream();
        using var copied = new MemoryStream();
        model.CopyToAsync(copiedModel).GetAwaiter().GetResult();
        stream.CopyToAsync(copied).GetAwaiter().GetResult();
        Assert.Equal(copiedModel.ToArray(), copied.ToArray());
        Assert.Equal(model.Position, stream.Position);
        Assert.Equal(model.ToArray(), stream.ToArray());
    }

    [Fact]
    public void AStreamEdgePositionsMatchMemoryStream()
    {
        using var model = new MemoryStream();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { InitialSegmentSize = 16, MaxSegmentSize = 64 });
        foreach (Stream s in new Stream[] { model, stream })
        {
            s.Write(new byte[40]);
            s.Position = 100;
            s.Write([]);
            s.Position = 120;
            s.WriteByte(9);
            s.SetLength(50);
            s.Position = 10;
        }

        Assert.Equal(model.Length, stream.Length);
        Assert.Equal(model.Position, stream.Position);
        Assert.Equal(model.Read(Array.Empty<byte>()), stream.Read(Array.Empty<byte>()));
        Assert.Equal(model.ToArray(), stream.ToArray());
        Assert.Throws<IOException>(() => stream.Seek(-11, SeekOrigin.Current));
        Assert.Equal(10, stream.Position);
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Seek(long.MaxValue, SeekOrigin.Current));
        Assert.Equal(10, stream.Position);
        stream.Seek(long.MaxValue, SeekOrigin.Begin);
        Assert.Equal(-1, stream.ReadByte());
        Assert.Throws<IOException>(() => stream.WriteByte(1));
        Assert.Equal(50, stream.Length);
    }

    [Fact]
    public void AStreamAtItsMaxLengthTakesTheLastByteAndRefusesTheNextWithoutChange()
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64, MaxLength = 100 });
        stream.Write(new byte[99]);
        stream.WriteByte(1);
        Assert.Throws<IOException>(() => stream.WriteByte(2));
        Assert.Equal(100, stream.Length);
        Assert.Equal(100, stream.Position);
        stream.Position = 200;
        Assert.Throws<IOException>(() => stream.Write([]));
        Assert.Equal(100, stream.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.SetLength(101));
        Assert.Equal(100, stream.Length);
    }

    [Fact]
    public void AWriterAtItsMaxLengthTakesTheLastByteAndRefusesTheNextWithoutChange()
    {
        using var pool = new TieredMemoryPool();
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64, MaxLength = 100 });
        writer.Write(new byte[99]);
        Assert.Equal(1, writer.GetMemory().Length);
        writer.Advance(1);
        Assert.Throws<InvalidOperationException>(() => writer.GetMemory());
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(1));
        Assert.Equal(100, writer.Length);
    }

    [Fact]
    public void APoolThatGivesLessThanAskedLeavesTheStreamAndWriterAsTheyWere()
    {
        var pool = new MisbehavingPool { ShortBy = 60, ShortFrom = 2 };
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 100, MaxSegmentSize = 100 };
        using (var stream = new SegmentedMemoryStream(options))
        {
            stream.Write(Filled(150, Mine));
            Assert.Throws<InvalidOperationException>(() => stream.Write(Filled(100, Theirs)));
            Assert.Equal(150, stream.Length);
            Assert.Equal(150, stream.Position);
            Assert.Equal(Filled(150, Mine), stream.ToArray());
        }

        Assert.Equal(0, pool.Outstanding);
        pool.ShortFrom = 2;
        pool.Rents = 0;
        using (var writer = new SegmentedBufferWriter(options))
        {
            writer.Write(Filled(150, Mine));
            Assert.Throws<InvalidOperationException>(() => writer.GetMemory(100));
            Assert.Equal(150, writer.Length);
            Assert.Equal(Filled(150, Mine), writer.ToArray());
        }

        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void AWriterOutlivingItsPoolFailsCleanlyAndGivesEverythingBack()
    {
        var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        writer.Write(Filled(10_000, Mine));
        pool.Dispose();
        Assert.Equal(Filled(10_000, Mine), writer.ToArray());
        Assert.Throws<ObjectDisposedException>(() => writer.GetMemory(10_000));
        Assert.Equal(10_000, writer.Length);
        writer.Dispose();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
    }

    [Fact]
    public void WritersOnManyShortLivedThreadsBalanceThePool()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 16 * 1024 };
        byte[] chunk = Filled(3000, Mine);
        for (int wave = 0; wave < 20; wave++)
        {
            var threads = new Thread[8];
            for (int t = 0; t < threads.Length; t++)
            {
                threads[t] = SegmentedBuffers.Started(() =>
                {
                    for (int i = 0; i < 20; i++)
                    {
                        using var writer = new SegmentedBufferWriter(options);
                        using var stream = new SegmentedMemoryStream(options);
                        for (int k = 0; k < 10; k++)
                        {
                            writer.Write(chunk);
                            stream.Write(chunk);
                        }

                        writer.Consume(writer.Length / 2);
                        stream.SetLength(stream.Length / 3);
                    }
                });
            }

            foreach (Thread thread in threads)
            {
                thread.Join();
            }
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // ---------------------------------------------------------------------------------------------------------------
}
