using System;
using System.Buffers;
using System.IO;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A late use on the leak path (the generation check of <see cref="SegmentedLateDisposeSafetyTests"/> covers a late
/// dispose, not a late use): a write from a finalizer after the pool reclaimed the block, and a dispose deferred to a
/// copy that never completes. Forces full collections, so it runs alone.
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class SegmentedLateUseSafetyTests
{
    [Fact]
    public void AWriterWrittenByAnotherObjectsFinalizerAfterThePoolReclaimedItsBlockNeverWritesIntoTheNewRentersBlock()
    {
        // Round 1's late disposer, which writes its trailer before it disposes (a wrapper that flushes on finalize).
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.Default, time);
        nint address = DropALateWriter(pool);

        (IMemoryOwner<byte> innocent, System.Collections.Generic.List<IMemoryOwner<byte>> others) = SegmentedLateDisposeSafetyTests.ReclaimAndRentAgain(pool, time, address);

        LateWriter.Armed = true;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.True(LateWriter.Ran, "the late writer never ran");

        int overwritten = innocent.Memory.Span.Length - innocent.Memory.Span.Count((byte)0xBB);
        others.ForEach(static owner => owner.Dispose());
        innocent.Dispose();
        Assert.True(
            overwritten == 0,
            $"A write into a writer whose block the pool had reclaimed and rented again changed {overwritten} bytes of the new renter's block (the late write {(LateWriter.Error is null ? "succeeded" : $"threw {LateWriter.Error.GetType().Name}")}).");
    }

    [Fact]
    public void AStreamDisposedDuringACopyToAsyncThatNeverCompletesIsNotCountedLiveOnceCollected()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        StartAndDropAStreamCopy(pool);
        Collect();

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TestContext.Current.TestOutputHelper?.WriteLine($"{statistics.Segmented}; pool bytes in use {statistics.BytesInUse}, leaks reclaimed {statistics.LeaksReclaimed}");
        Assert.True(
            statistics.Segmented.LiveBuffers == 0 && statistics.Segmented.BytesHeld == 0,
            $"No stream exists any more (its blocks: {statistics.LeaksReclaimed} reclaimed by the pool), yet the statistics count {statistics.Segmented.LiveBuffers} live buffer(s) holding {statistics.Segmented.BytesHeld} bytes.");
    }

    [Fact]
    public void AWriterDisposedDuringACopyToAsyncThatNeverCompletesIsNotCountedLiveOnceCollected()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        StartAndDropAWriterCopy(pool);
        Collect();

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        TestContext.Current.TestOutputHelper?.WriteLine($"{statistics.Segmented}; pool bytes in use {statistics.BytesInUse}, leaks reclaimed {statistics.LeaksReclaimed}");
        Assert.True(
            statistics.Segmented.LiveBuffers == 0 && statistics.Segmented.BytesHeld == 0,
            $"No writer exists any more (its blocks: {statistics.LeaksReclaimed} reclaimed by the pool), yet the statistics count {statistics.Segmented.LiveBuffers} live buffer(s) holding {statistics.Segmented.BytesHeld} bytes.");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StartAndDropAStreamCopy(TieredMemoryPool pool)
    {
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        stream.Write(new byte[64 * 1024]);
        stream.Position = 0;
        Task copy = stream.CopyToAsync(new NeverStream());
        Assert.False(copy.IsCompleted);
        stream.Dispose();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StartAndDropAWriterCopy(TieredMemoryPool pool)
    {
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        writer.Write(new byte[64 * 1024]);
        ValueTask copy = writer.CopyToAsync(new NeverStream());
        Assert.False(copy.IsCompleted);
        writer.Dispose();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint DropALateWriter(TieredMemoryPool pool)
    {
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        writer.Write(new byte[100]);
        nint address = SegmentedBuffers.AddressOf(writer.GetReadOnlySequence().First);
        _ = new LateWriter(writer);
        return address;
    }

    private static void Collect()
    {
        for (int i = 0; i < 4; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    /// <summary>A finalizer that puts itself back until armed, then writes a trailer into the writer and disposes it.</summary>
    private sealed class LateWriter(SegmentedBufferWriter writer)
    {
        public static bool Armed { get; set; }

        public static bool Ran { get; private set; }

        public static Exception? Error { get; private set; }

        ~LateWriter()
        {
            if (!Armed)
            {
                GC.ReRegisterForFinalize(this);
                return;
            }

            Ran = true;
            try
            {
                writer.Write(SegmentedBuffers.Filled(1000, 0x5A));
            }
            catch (Exception error)
            {
                Error = error;
            }

            try
            {
                writer.Dispose();
            }
            catch (Exception error)
            {
                Error ??= error;
            }
        }
    }

    /// <summary>A destination whose asynchronous writes never complete (a peer that stopped reading, then went away).</summary>
    private sealed class NeverStream : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            new(new TaskCompletionSource().Task);

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
