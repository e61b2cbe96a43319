using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;

#pragma warning disable CA2000, CA1849, xUnit1031

namespace Zipora.Buffers.Tests;

/// <summary>The stream: its copies build spans from the block's address (a pool block) or its memory (any other owner).</summary>
public sealed partial class SegmentedBufferIsolationSafetyTests
{
    [Fact]
    public void ADisposeRacingStreamWritesPastTheEndShrinksAndAsyncCopiesOnlyThrowsDisposedAndBalances()
    {
        // The stream's spans come from the block's address under the guard: a dispose from another thread meanwhile
        // is done by the call as it leaves (an asynchronous copy's on the thread that completes it, whose slot then
        // gets the tracker and its spare). Fresh streams on both threads after must hold only their own bytes.
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 48 };
        int disposedSeen = BufferRaces.UseAgainstADispose(
            () =>
            {
                var raced = new SegmentedMemoryStream(options);
                raced.Write(Filled(1, 200));
                return raced;
            },
            static raced =>
            {
                // The only way out of the loop is the dispose.
                for (int i = 0; ; i++)
                {
                    raced.Seek(5 + (i % 40), SeekOrigin.End);
                    raced.Write(Filled(1, 1 + (i * 13 % 60)));
                    raced.SetLength(raced.Length - (i % 70));
                    raced.Position = i % 50;
                    raced.Write(Filled(1, 40));
                    _ = raced.ReadByte();
                    if (i % 16 == 0)
                    {
                        raced.Position = 0;
                        raced.CopyToAsync(new YieldingStream()).GetAwaiter().GetResult();
                    }
                }
            },
            rounds: 200,
            spinPerRound: 40,
            afterEach: _ =>
            {
                using var fresh = new SegmentedMemoryStream(options);
                fresh.Write(Filled(2, 100));
                Assert.True(Array.TrueForAll(fresh.ToArray(), static b => b == 2), "a fresh stream holds another's byte");
            });

        Assert.Equal(200, disposedSeen);
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void StreamsOverEveryKindOfBlockMatchMemoryStreamAtSegmentBoundariesAndPastTheEnd(int kind)
    {
        // The stream's copies build spans from the block's address (a pool block) or its memory (any other owner):
        // SetLength down and up, seeks past the end and overwrites across boundaries over blocks that hold stale bytes
        // must read as MemoryStream does (zeros where it has zeros), whatever the owner.
        using var tiered = kind switch
        {
            0 => new TieredMemoryPool(),
            1 => new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.Sampled }),
            // A short delay: a disposed pool keeps its pinned arrays for one, and arrays left on the pinned heap for
            // the default 10 s could keep a resident-memory test that follows from seeing that heap shrink.
            2 => new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, IdleReleaseDelay = TimeSpan.FromMilliseconds(40) }),
            3 => new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = true }),
            _ => null,
        };
        using var foreign = new OffsetPool();
        MemoryPool<byte> pool = tiered ?? (MemoryPool<byte>)foreign;
        var random = new Random(kind);
        for (int seed = 0; seed < 300; seed++)
        {
            using var model = new MemoryStream();
            using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 48 });
            var log = new List<string>();
            for (int step = 0; step < 40; step++)
            {
                long where = random.Next(0, 200);
                byte[] data = Filled((byte)(1 + random.Next(250)), random.Next(0, 70));
                switch (random.Next(6))
                {
                    case 0:
                        log.Add($"SetLength({where})");
                        model.SetLength(where);
                        stream.SetLength(where);
                        break;
                    case 1:
                        log.Add($"Position={where}");
                        model.Position = where;
                        stream.Position = where;
                        break;
                    case 2:
                        log.Add($"ReadByte@{model.Position}");
                        Assert.True(model.ReadByte() == stream.ReadByte(), string.Join("; ", log));
                        break;
                    case 3:
                        byte[] expected = new byte[data.Length], actual = new byte[data.Length];
                        log.Add($"Read({data.Length})@{model.Position}");
                        Assert.Equal(model.Read(expected), stream.Read(actual));
                        Assert.True(expected.AsSpan().SequenceEqual(actual), string.Join("; ", log));
                        break;
                    default:
                        log.Add($"Write({data.Length})@{model.Position}");
                        model.Write(data);
                        stream.Write(data);
                        break;
                }

                Assert.True(model.Position == stream.Position && model.Length == stream.Length, string.Join("; ", log));
            }

            Assert.True(model.ToArray().AsSpan().SequenceEqual(stream.ToArray()), string.Join("; ", log));
        }

        if (tiered is not null)
        {
            SegmentedBuffers.AssertBalanced(tiered);
        }

        Assert.Equal(foreign.Rents, foreign.Returns);
    }
}
