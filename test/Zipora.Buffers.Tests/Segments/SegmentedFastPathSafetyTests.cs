using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

#pragma warning disable CA2000, CA1031, CA1849, xUnit1031

namespace Zipora.Buffers.Tests;

/// <summary>
/// The segmented writer's fast path: GetSpan/GetMemory reading the tail without the guard (a call count in the
/// guard), the span from the block's address, the tracker given back with a plain store, TryDetach without an
/// exchange, and the options' cached settings. Each test states the promise it checks.
/// </summary>
public sealed unsafe partial class SegmentedFastPathSafetyTests
{
    // ---------------------------------------------------------------------------------------------------------------
    // Dispose racing the unguarded GetSpan/GetMemory (and the guarded calls).
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void ADisposeRacingFastGetSpanAndGetMemoryReturnsEverySegmentOnceAndOnlyThrowsDisposed()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 8192 };
        var seen = new ConcurrentDictionary<Type, int>();
        Exception? firstUnexpected = null;
        int badLengths = 0;
        for (int round = 0; round < 300; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            writer.GetSpan(10);
            writer.Advance(10);
            using var start = new Barrier(2);
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 20_000; i++)
                    {
                        int hint = i % 7;
                        int length = (i & 1) == 0 ? writer.GetSpan(hint).Length : writer.GetMemory(hint).Length;
                        if (length < Math.Max(hint, 1) || length > 8192)
                        {
                            Interlocked.Increment(ref badLengths);
                        }

                        if (i % 97 == 0)
                        {
                            writer.Advance(1);
                        }

                        if (i % 1001 == 0)
                        {
                            writer.Consume(writer.Length);
                        }
                    }
                }
                catch (Exception error)
                {
                    seen.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
                    if (error is not ObjectDisposedException)
                    {
                        // Kept whole, stack and all: about one run in 25 threw NullReferenceException here, from the
                        // quiet read reading the tail twice (see SegmentChain.TailReadOnce), before it read it once.
                        Interlocked.CompareExchange(ref firstUnexpected, error, null);
                    }
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 30);
            writer.Dispose();
            user.Join();
        }

        Assert.Equal(0, badLengths);
        Assert.True(firstUnexpected is null, $"only ObjectDisposedException may be thrown; first other: {firstUnexpected}");
        Assert.All(seen.Keys, type => Assert.Equal(typeof(ObjectDisposedException), type));
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void TwoDisposesRacingAFastGetSpanLoopReturnEverySegmentOnce()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 256, MaxSegmentSize = 1024 };
        var seen = new ConcurrentDictionary<Type, int>();
        for (int round = 0; round < 300; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            writer.Write(new byte[3000]);
            using var start = new Barrier(3);
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 5000; i++)
                    {
                        writer.GetSpan(1)[0] = 1;
                        writer.Advance(1);
                    }
                }
                catch (Exception error)
                {
                    seen.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
                }
            });
            Thread disposer = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                Thread.SpinWait(round * 20);
                writer.Dispose();
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 20);
            writer.Dispose();
            user.Join();
            disposer.Join();
            Assert.Throws<ObjectDisposedException>(() => writer.GetSpan());
            Assert.Throws<ObjectDisposedException>(() => writer.GetMemory());
        }

        Assert.All(seen.Keys, type => Assert.Equal(typeof(ObjectDisposedException), type));
        SegmentedBuffers.AssertBalanced(pool);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Two threads misusing one writer: GetSpan/GetMemory without the guard against Reset/Consume/Advance/growth.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void GetSpanOnOneThreadAgainstResetConsumeAdvanceOnAnotherIsToldAndNeverCorruptsTheBalance()
    {
        var seen = new ConcurrentDictionary<Type, int>();
        int badLengths = 0;
        string? firstBad = null;
        void Record(Exception error) => seen.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
        RaceAMisusingThread(
            (writer, i) =>
            {
                int hint = (i * 31) % 300;
                int length;
                if ((i & 1) == 0)
                {
                    length = writer.GetSpan(hint).Length;
                }
                else
                {
                    Memory<byte> memory = writer.GetMemory(hint);
                    try
                    {
                        length = memory.Span.Length;
                    }
                    catch (ObjectDisposedException)
                    {
                        // The other thread's consume or reset returned the block between the call and this line: a
                        // memory kept past its validity refuses its span, as documented.
                        return;
                    }
                }

                if (length < Math.Max(hint, 1) || length > 50_000)
                {
                    Interlocked.Increment(ref badLengths);
                    firstBad ??= $"hint {hint} gave {length}";
                }
            },
            Record,
            Record);

        TestContext.Current.TestOutputHelper?.WriteLine(string.Join(", ", seen));
        Assert.True(badLengths == 0, $"{badLengths} bad lengths, first: {firstBad}");
        Assert.All(seen.Keys, type => Assert.True(type == typeof(InvalidOperationException) || type == typeof(ArgumentOutOfRangeException), $"undocumented {type}"));
    }

    /// <summary>
    /// The unguarded read of a foreign pool's native blocks: every span GetSpan gives lies wholly inside a block the
    /// writer rented and that was not returned before the call started (the pool here never reuses a block, so a torn
    /// read shows as a span outside every block, across two, or on a block already given back).
    /// </summary>
    [Fact]
    public void EverySpanFromARacedWriterLiesInsideOneOfItsLiveBlocks()
    {
        using var pool = new ArenaPool(256 << 20);
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 1024, MaxLength = 1 << 20 };
        var writer = new SegmentedBufferWriter(options);
        var problems = new ConcurrentQueue<string>();
        var seen = new ConcurrentDictionary<Type, int>();
        using var start = new Barrier(2);
        bool stop = false;
        Thread reader = SegmentedBuffers.Started(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < 200_000 && !Volatile.Read(ref stop); i++)
            {
                int hint = i % 100;
                long releasesBefore = pool.Releases;
                try
                {
                    Span<byte> span = writer.GetSpan(hint);
                    nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span));
                    string? problem = pool.Check(address, span.Length, releasesBefore);
                    if (problem is not null)
                    {
                        problems.Enqueue($"GetSpan({hint}): {problem}");
                    }
                }
                catch (Exception error)
                {
                    seen.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
                }
            }
        });
        start.SignalAndWait();
        for (int i = 0; i < 100_000 && problems.IsEmpty; i++)
        {
            try
            {
                switch (i % 4)
                {
                    case 0:
                        writer.GetMemory(1 + (i % 900));
                        writer.Advance(i % 60);
                        break;
                    case 1:
                        writer.Consume(writer.Length);
                        break;
                    case 2:
                        writer.Reset();
                        break;
                    default:
                        writer.Write(new byte[i % 300]);
                        break;
                }
            }
            catch (Exception error)
            {
                seen.AddOrUpdate(error.GetType(), 1, static (_, c) => c + 1);
            }
        }

        Volatile.Write(ref stop, true);
        reader.Join();
        writer.Dispose();
        TestContext.Current.TestOutputHelper?.WriteLine(string.Join(", ", seen));
        Assert.True(problems.IsEmpty, string.Join("\n", problems));
        Assert.All(seen.Keys, type => Assert.True(type == typeof(InvalidOperationException) || type == typeof(ArgumentOutOfRangeException), $"undocumented {type}"));
        Assert.Equal(pool.Rents, pool.Releases);
    }

    /// <summary>
    /// The two-thread misuse tests' race: 40 rounds, each over a new writer of small segments (64 B to 2 KB, at most
    /// 50,000 bytes), in which a reading thread makes <paramref name="readerStep"/> 30,000 times while this thread moves
    /// the writer on as many times (<see cref="MoveTheWriterOn"/>); each thread's exceptions go to its handler, the
    /// writer is disposed after each round, and at the end every block is back in the pool once.
    /// </summary>
    private static void RaceAMisusingThread(Action<SegmentedBufferWriter, int> readerStep, Action<Exception> readerError, Action<Exception> misuserError)
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 2048, MaxLength = 50_000 };
        for (int round = 0; round < 40; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            using var start = new Barrier(2);
            Thread reader = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < 30_000; i++)
                {
                    try
                    {
                        readerStep(writer, i);
                    }
                    catch (Exception error)
                    {
                        readerError(error);
                    }
                }
            });
            start.SignalAndWait();
            for (int i = 0; i < 30_000; i++)
            {
                try
                {
                    MoveTheWriterOn(writer, i);
                }
                catch (Exception error)
                {
                    misuserError(error);
                }
            }

            reader.Join();
            writer.Dispose();
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    /// <summary>
    /// Step <paramref name="i"/> of the misusing thread of the two-thread tests: a write with a request of its own size,
    /// half the data consumed, an advance of one, now and then a reset, or a plain write.
    /// </summary>
    private static void MoveTheWriterOn(SegmentedBufferWriter writer, int i)
    {
        switch (i % 5)
        {
            case 0:
                writer.GetMemory(1 + (i % 700));
                writer.Advance(i % 50);
                break;
            case 1:
                writer.Consume(writer.Length / 2);
                break;
            case 2:
                writer.Advance(1);
                break;
            case 3:
                if (i % 45 == 3)
                {
                    writer.Reset();
                }

                break;
            default:
                writer.Write(new byte[i % 200]);
                break;
        }
    }
}
