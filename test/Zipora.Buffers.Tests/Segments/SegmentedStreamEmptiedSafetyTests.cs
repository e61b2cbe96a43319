using System;
using System.Buffers;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>A stream emptied with <c>SetLength(0)</c>, which keeps its first segment: every promise still holds.</summary>
[Collection(nameof(HugepageTests))]
public sealed class SegmentedStreamEmptiedSafetyTests
{
    private static byte[] Pattern(int length, int seed = 0) => [.. Enumerable.Range(seed, length).Select(static i => (byte)(i * 13 + 1))];

    [Fact]
    public void AnEmptiedStreamWhoseLaterOwnerRefusesKeepsItsHeadAndGivesBackEveryOtherOnce()
    {
        var pool = new MisbehavingPool { Refuses = static index => index == 1 };
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 16 };
        var stream = new SegmentedMemoryStream(options);
        var model = new MemoryStream();
        foreach (Stream each in new Stream[] { stream, model })
        {
            each.Write(Pattern(100));
            each.Position = 70;
            _ = each.ReadByte();
            each.Position = 5;
            _ = each.ReadByte();
        }

        Assert.Throws<InvalidOperationException>(() => stream.SetLength(0));
        model.SetLength(0);
        Assert.Equal(model.Length, stream.Length);
        Assert.Equal(model.Position, stream.Position);
        using var other = new SegmentedMemoryStream(options);
        other.Write(Pattern(64, 9));
        foreach (Stream each in new Stream[] { stream, model })
        {
            each.Position = 10;
            each.Write(Pattern(30, 3));
            each.Position = 3;
            _ = each.ReadByte();
        }

        Assert.Equal(model.ToArray(), stream.ToArray());
        Assert.Equal(Pattern(64, 9), other.ToArray());
        stream.Dispose();
        other.Dispose();
        Assert.Equal(1, pool.Outstanding);
        Assert.Equal(0, pool.DoubleDisposes);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AStreamEmptiedOverAndOverBalancesEveryStatistic(bool pinned)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = pinned, EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 64 * 1024 };
        var random = new Random(3);
        for (int round = 0; round < 20; round++)
        {
            using var stream = new SegmentedMemoryStream(options);
            var model = new MemoryStream();
            for (int step = 0; step < 50; step++)
            {
                int length = random.Next(0, 20_000);
                byte[] data = Pattern(length, step);
                foreach (Stream each in new Stream[] { stream, model })
                {
                    switch (step % 5)
                    {
                        case 0: each.SetLength(0); break;
                        case 1: each.Position = length / 3; break;
                        case 2: each.SetLength(length / 2); break;
                        default: break;
                    }

                    each.Write(data);
                }

                Assert.Equal(model.ToArray(), stream.ToArray());
                Assert.Equal(model.Position, stream.Position);
                Assert.True(stream.TryGetSingleSegment(out _) || stream.Length > 4096);
            }
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
        Assert.Equal(statistics.Large.Rents, statistics.Large.Returns);
        Assert.Equal(0, statistics.DoubleDisposes);
    }

    /// <summary>
    /// A stream reused for message after message (<c>SetLength(0)</c> between them, as its documentation says) counts
    /// each message as a new stream for each would: emptied after its last message and disposed, it counted none of
    /// the messages nor the segments they rented; emptied before each, it counted one message holding every segment
    /// rented by all of them.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AStreamEmptiedBetweenMessagesCountsEachMessageAsANewStreamForEachWould(bool emptiedAfterEach)
    {
        const int Messages = 5;
        byte[] message = Pattern(20_000);
        using var fresh = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        for (int i = 0; i < Messages; i++)
        {
            using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = fresh });
            stream.Write(message);
        }

        using var reused = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        using (var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = reused }))
        {
            for (int i = 0; i < Messages; i++)
            {
                if (!emptiedAfterEach)
                {
                    stream.SetLength(0);
                }

                stream.Write(message);
                if (emptiedAfterEach)
                {
                    stream.SetLength(0);
                }
            }
        }

        SegmentedBufferStatistics expected = fresh.GetStatistics().Segmented;
        SegmentedBufferStatistics actual = reused.GetStatistics().Segmented;
        Assert.Equal(Messages, expected.Messages);
        Assert.Equal(expected.Messages, actual.Messages);
        Assert.Equal(expected.MessageSegments, actual.MessageSegments);
        Assert.Equal(expected.LargestMessage, actual.LargestMessage);
        Assert.Equal(0, actual.BytesHeld);
    }

    [Fact]
    public void AHeadLargerThanMaxLengthStillRefusesAWritePastIt()
    {
        using var pool = new TieredMemoryPool();
        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096, MaxLength = 100 });
        stream.Write(Pattern(100));
        stream.SetLength(0);
        stream.Position = 50;
        Assert.Throws<IOException>(() => stream.Write(Pattern(51)));
        Assert.Equal(0, stream.Length);
        Assert.Equal(50, stream.Position);
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.SetLength(101));
        stream.Write(Pattern(50));
        Assert.Equal(100, stream.Length);
        Assert.Throws<IOException>(() => stream.WriteByte(1));
    }

    [Fact]
    public async Task AnEmptiedStreamDisposedOnAnotherThreadWhileEmptiedAgainGivesEveryBlockBackOnce()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool };
        for (int i = 0; i < 2000; i++)
        {
            var stream = new SegmentedMemoryStream(options);
            stream.Write(new byte[20_000]);
            using var go = new Barrier(2);
            Task racer = Task.Run(() =>
            {
                go.SignalAndWait();
                stream.Dispose();
            }, TestContext.Current.CancellationToken);
            go.SignalAndWait();
            try
            {
                for (int k = 0; k < 3; k++)
                {
                    stream.SetLength(0);
                    stream.Write(new byte[9000]);
                }
            }
            catch (ObjectDisposedException)
            {
            }
            catch (InvalidOperationException)
            {
            }

            await racer;
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
        Assert.Equal(0, statistics.DoubleDisposes);
        Assert.Equal(statistics.Large.Rents, statistics.Large.Returns);
    }

    [Fact]
    public void AnEmptiedStreamDroppedWithoutDisposeHasItsKeptSegmentReclaimed()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = TimeSpan.FromSeconds(10) });
        LeakEmptied(pool);
        for (int i = 0; i < 8 && pool.GetStatistics().Segmented.Leaked == 0; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        TieredMemoryPoolStatistics leaked = pool.GetStatistics();
        Assert.Equal(1, leaked.Segmented.Leaked);
        Assert.Equal(0, leaked.Segmented.LiveBuffers);
        Assert.Equal(0, leaked.Segmented.BytesHeld);
        for (int i = 0; i < 8 && pool.GetStatistics().LeaksReclaimed < 1; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        for (int tick = 0; tick < 5; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(2.5));
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Theory]
    [InlineData(16, 64)]
    [InlineData(4096, 65536)]
    public async Task RandomCallsAroundSetLengthZeroMatchMemoryStream(int initial, int max)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = initial, MaxSegmentSize = max };
        for (int seed = 0; seed < 200; seed++)
        {
            var random = new Random(seed);
            using var stream = new SegmentedMemoryStream(options);
            using var model = new MemoryStream();
            var log = new System.Collections.Generic.List<string>();
            for (int step = 0; step < 60; step++)
            {
                int op = random.Next(12);
                int size = random.Next(0, 3 * initial + 50);
                byte[] data = Pattern(size, step);
                log.Add($"{op}:{size}");
                switch (op)
                {
                    case 0:
                    case 1:
                        stream.SetLength(0);
                        model.SetLength(0);
                        break;
                    case 2:
                        stream.Write(data);
                        model.Write(data);
                        break;
                    case 3:
                        stream.Position = size;
                        model.Position = size;
                        break;
                    case 4:
                        stream.SetLength(size);
                        model.SetLength(size);
                        break;
                    case 5:
                    {
                        byte[] a = new byte[size];
                        byte[] b = new byte[size];
                        Assert.Equal(model.Read(b), await stream.ReadAsync(a, TestContext.Current.CancellationToken));
                        Assert.Equal(b, a);
                        break;
                    }

                    case 6:
                        stream.CopyTo(stream);
                        model.CopyTo(model);
                        break;
                    case 7:
                        stream.WriteTo(stream);
                        model.WriteTo(model);
                        break;
                    case 8:
                        Assert.True(stream.TryGetSingleSegment(out ReadOnlyMemory<byte> single) || stream.Length > initial);
                        if (stream.Length <= initial)
                        {
                            Assert.Equal(model.ToArray(), single.ToArray());
                        }

                        Assert.Equal(model.ToArray(), stream.GetReadOnlySequence().ToArray());
                        break;
                    case 9:
                        stream.Write([]);
                        model.Write([]);
                        break;
                    case 10:
                    {
                        using var a = new MemoryStream();
                        using var b = new MemoryStream();
                        await stream.CopyToAsync(a, TestContext.Current.CancellationToken);
                        await model.CopyToAsync(b, TestContext.Current.CancellationToken);
                        Assert.Equal(b.ToArray(), a.ToArray());
                        break;
                    }

                    default:
                        Assert.Equal(model.ReadByte(), stream.ReadByte());
                        break;
                }

                Assert.True(model.Length == stream.Length && model.Position == stream.Position, string.Join(" ", log));
                Assert.Equal(model.ToArray(), stream.ToArray());
            }
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakEmptied(TieredMemoryPool pool)
    {
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, MaxSegmentSize = 64 * 1024 });
        stream.Write(new byte[100_000]);
        stream.SetLength(0);
        stream.Write(new byte[10]);
        stream.SetLength(0);
    }
}
