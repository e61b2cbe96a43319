using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Misuse that must stay harmless: disposes racing each other or a growing or consuming thread, memory kept past a
/// dispose. Whatever happens, no block is returned twice (the pool's rents and returns balance, nothing stays in use)
/// and the only exceptions are the documented ones.
/// </summary>
public sealed class SegmentedSafetyTests
{
    [Fact]
    public void TwoThreadsDisposingOneWriterAtOnceReturnEachSegmentOnce()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 32 * 1024 };
        for (int round = 0; round < 300; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            writer.Write(new byte[50_000]);
            using var start = new Barrier(2);
            Thread other = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                writer.Dispose();
            });
            start.SignalAndWait();
            writer.Dispose();
            other.Join();
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void TwoThreadsDisposingOneStreamAtOnceReturnEachSegmentOnce()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 32 * 1024 };
        for (int round = 0; round < 300; round++)
        {
            var stream = new SegmentedMemoryStream(options);
            stream.Write(new byte[50_000]);
            using var start = new Barrier(2);
            Thread other = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                stream.Dispose();
            });
            start.SignalAndWait();
            stream.Dispose();
            other.Join();
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void ADisposeRacingAGrowingAndConsumingThreadNeverReturnsASegmentTwice()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 256, MaxSegmentSize = 4096 };
        var seen = new ConcurrentDictionary<Type, int>();
        for (int round = 0; round < 200; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            using var start = new Barrier(2);
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 200; i++)
                    {
                        writer.GetMemory(100 + (i * 37 % 3000));
                        writer.Advance(50);
                        if (i % 3 == 0)
                        {
                            writer.Consume(writer.Length / 2);
                        }

                        if (i % 50 == 0)
                        {
                            writer.Reset();
                        }
                    }
                }
                catch (Exception exception) when (exception is ObjectDisposedException or InvalidOperationException or ArgumentOutOfRangeException)
                {
                    // The documented outcomes of using a writer that another thread disposes: the test counts them.
                    seen.AddOrUpdate(exception.GetType(), 1, static (_, count) => count + 1);
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 50);
            writer.Dispose();
            user.Join();
        }

        SegmentedBuffers.AssertBalanced(pool);
        Assert.All(seen.Keys, type => Assert.True(type == typeof(ObjectDisposedException) || type == typeof(InvalidOperationException) || type == typeof(ArgumentOutOfRangeException)));
    }

    [Fact]
    public void MemoryKeptPastDisposeThrowsObjectDisposedUntilItsBlockIsRentedAgain()
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        Memory<byte> kept = writer.GetMemory(100);
        writer.Advance(10);
        writer.Dispose();

        // The block is back in the pool: its memory refuses every use (the documented validity ends at dispose).
        Assert.Throws<ObjectDisposedException>(() => kept.Span[0] = 1);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void TwoThreadsGrowingOneWriterAtOnceAreToldAndLoseNothing()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64 };
        int refused = 0;
        for (int round = 0; round < 100; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            using var start = new Barrier(2);
            void Grow()
            {
                start.SignalAndWait();
                for (int i = 0; i < 500; i++)
                {
                    try
                    {
                        writer.GetMemory(1000);
                    }
                    catch (InvalidOperationException)
                    {
                        // The guard told this thread another one was growing the writer: that is what is proved here.
                        Interlocked.Increment(ref refused);
                    }
                }
            }

            Thread other = SegmentedBuffers.Started(Grow);
            Grow();
            other.Join();
            writer.Dispose();
        }

        SegmentedBuffers.AssertBalanced(pool);
        TestContext.Current.TestOutputHelper?.WriteLine($"concurrent growths refused: {refused}");
    }

    [Fact]
    public void AGetSpanRacingADisposeGetsTheTailsRoomOrObjectDisposedAndNothingElse()
    {
        // GetSpan reads the tail's room without the guard: a dispose landing in the middle of that read must make it
        // throw ObjectDisposedException, never hand out a torn span or throw anything else.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        BufferRaces.ReadAgainstADispose(
            options,
            static writer => writer.Advance(WriteOne(writer)),
            static writer =>
            {
                Span<byte> room = writer.GetSpan(1);
                if (room.Length is < 1 or > 4095)
                {
                    throw new InvalidOperationException($"A room of {room.Length} bytes in a 4 KB segment holding one byte.");
                }
            });
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void GetSpanRacingResetsAndConsumesOnAnotherThreadIsToldOrGivenRoomAndLosesNothing()
    {
        // Misuse: one thread takes room while another rewrites the chain. A room read while the chain changed must be
        // thrown away (then the guard tells the thread), never handed out torn.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 1024 };
        int told = BufferRaces.ReadAgainstRewrites(options, static writer =>
        {
            Span<byte> room = writer.GetSpan(1);
            if (room.Length is < 1 or > 1024)
            {
                throw new InvalidOperationException($"A torn room of {room.Length} bytes (segments are 64 B to 1 KB).");
            }
        });
        SegmentedBuffers.AssertBalanced(pool);
        TestContext.Current.TestOutputHelper?.WriteLine($"GetSpan calls told of the other thread: {told}");
    }

    [Fact]
    public void AGetReadOnlySequenceRacingADisposeGetsASequenceOrObjectDisposedAndNothingElse()
    {
        // Several segments, so the sequence spans a head and a tail that the dispose clears one after the other; a
        // sequence's contents are valid only until the dispose, which may come at once, so they are not read here.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 1024, MaxSegmentSize = 1024 };
        BufferRaces.ReadAgainstADispose(options, static writer => writer.Write(new byte[5000]), static writer => _ = writer.GetReadOnlySequence());
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void GetReadOnlySequenceRacingWritesConsumesAndResetsOnAnotherThreadIsToldOrGivenASequenceAndLosesNothing()
    {
        // Misuse: the guard tells whichever thread met the other inside; nothing else is thrown (never the sequence
        // constructor's ArgumentException over segments being let go of), and no segment is lost or returned twice.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 1024 };
        int told = BufferRaces.ReadAgainstRewrites(options, static writer => _ = writer.GetReadOnlySequence());
        SegmentedBuffers.AssertBalanced(pool);
        TestContext.Current.TestOutputHelper?.WriteLine($"GetReadOnlySequence calls told of the other thread: {told}");
    }

    [Fact]
    public void AReadWithoutTheGuardIsQuietOnlyIfNoGuardedCallOrDisposeOverlappedIt()
    {
        // GetSpan's unguarded read of the tail trusts what it read only when this says quiet: every guarded call (which
        // is where the chain changes) and a dispose must make an overlapping read not quiet, whichever thread made it.
        using var pool = new TieredMemoryPool();
        var chain = default(SegmentChain);
        chain.Initialize(new SegmentedBufferOptions { Pool = pool }, "chain");

        Assert.True(chain.TryStartRead(out long quiet));
        Assert.True(chain.ReadWasQuiet(quiet));

        Assert.True(chain.TryStartRead(out long overlappedHere));
        chain.Enter("chain");
        Assert.False(chain.TryStartRead(out _), "a read may not start while a call is inside");
        chain.Exit();
        Assert.False(chain.ReadWasQuiet(overlappedHere));

        Assert.True(chain.TryStartRead(out long overlappedElsewhere));
        Thread other = SegmentedBuffers.Started(() =>
        {
            chain.Enter("chain");
            chain.Exit();
        });
        other.Join();
        Assert.False(chain.ReadWasQuiet(overlappedElsewhere));

        Assert.True(chain.TryStartRead(out long disposedMeanwhile));
        chain.Dispose();
        Assert.False(chain.ReadWasQuiet(disposedMeanwhile));
        Assert.False(chain.TryStartRead(out _), "a disposed chain is never read without the guard");
    }

    private static int WriteOne(SegmentedBufferWriter writer)
    {
        writer.GetSpan(1)[0] = 1;
        return 1;
    }
}
