using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

#pragma warning disable CA2000, CA1031, CA1849, xUnit1031

namespace Zipora.Buffers.Tests;

/// <summary>
/// The fast path's bounds and settings: small MaxLength and hints, foreign pools, options changed while buffers are
/// made.
/// </summary>
public sealed unsafe partial class SegmentedFastPathSafetyTests
{
    // ---------------------------------------------------------------------------------------------------------------
    // MaxLength small, hint 0, huge hints.
    // ---------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(10L)]
    [InlineData(4095L)]
    [InlineData(4096L)]
    [InlineData(4097L)]
    public void ASmallMaxLengthBoundsEverySpanAndMemoryOnTheFastPathToo(long maxLength)
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096, MaxLength = maxLength });
        long written = 0;
        for (int step = 0; step < 50; step++)
        {
            long room = maxLength - written;
            foreach (int hint in new[] { 0, 1, 3 })
            {
                if (Math.Max(hint, 1) > room)
                {
                    Assert.Throws<InvalidOperationException>(() => writer.GetSpan(hint));
                    Assert.Throws<InvalidOperationException>(() => writer.GetMemory(hint));
                    continue;
                }

                int span = writer.GetSpan(hint).Length;
                int memory = writer.GetMemory(hint).Length;
                Assert.True(span <= room && memory <= room, $"MaxLength {maxLength}, {written} written: span {span}, memory {memory}, room {room}");
                Assert.Equal(memory, span);
            }

            if (room == 0)
            {
                break;
            }

            int advance = (int)Math.Min(room, 3);
            writer.GetSpan(advance).Slice(0, advance).Fill(7);
            writer.Advance(advance);
            written += advance;
            Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance((int)Math.Min(int.MaxValue, maxLength - written + 1)));
        }

        Assert.Equal(written, writer.Length);
        writer.Dispose();
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void HugeAndNegativeHintsThrowTheDocumentedExceptionsAndLeaveTheWriterWhole()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = 1 << 20 });
        foreach (long maxLength in new[] { 100L, int.MaxValue, long.MaxValue })
        {
            var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 1024, MaxLength = maxLength });
            writer.Write(new byte[50]);
            foreach (int hint in new[] { int.MaxValue, int.MaxValue - 1, (1 << 20) + 1, -1, int.MinValue })
            {
                Exception? span = Record.Exception(() => writer.GetSpan(hint));
                Exception? memory = Record.Exception(() => writer.GetMemory(hint));
                Assert.True(span is ArgumentOutOfRangeException or InvalidOperationException, $"GetSpan({hint}) MaxLength {maxLength}: {span}");
                Assert.Equal(span!.GetType(), memory!.GetType());
            }

            Assert.Equal(50, writer.Length);
            Assert.True(writer.GetSpan(0).Length >= 1);
            writer.Write(new byte[10]);
            Assert.Equal(60, writer.ToArray().Length);
            writer.Dispose();
        }

        SegmentedBuffers.AssertBalanced(pool);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Foreign pools (BlockAddress 0, or a foreign NativeMemoryManager) and tiered variants: the span and the memory
    // are the same bytes, and the data read back is what was written.
    // ---------------------------------------------------------------------------------------------------------------

    public static TheoryData<string> Pools() => new() { "shared", "arraypool", "arena", "tiered", "tiered-pinned", "tiered-diagnostics", "tiered-reuse" };

    [Theory]
    [MemberData(nameof(Pools))]
    public void SpanAndMemoryAreTheSameBytesAndTheDataMatchesAModel(string kind)
    {
        using IDisposable? owned = MakePool(kind, out MemoryPool<byte>? pool);
        var random = new Random(kind.Length);
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 32, MaxSegmentSize = 512, MaxLength = 100_000 };
        using var writer = new SegmentedBufferWriter(options);
        var model = new List<byte>();
        byte next = 1;
        for (int step = 0; step < 3000; step++)
        {
            int op = random.Next(10);
            if (op < 6)
            {
                int hint = random.Next(0, 700);
                Span<byte> span = writer.GetSpan(hint);
                Memory<byte> memory = writer.GetMemory(hint);
                Assert.Equal(memory.Length, span.Length);
                Assert.True(Unsafe.AreSame(ref MemoryMarshal.GetReference(span), ref MemoryMarshal.GetReference(memory.Span)), "span and memory differ");
                int count = random.Next(0, Math.Min(span.Length, 600) + 1);
                for (int i = 0; i < count; i++)
                {
                    ((i & 1) == 0 ? span : memory.Span)[i] = next;
                    model.Add(next);
                    next = (byte)(next == 250 ? 1 : next + 1);
                }

                writer.Advance(count);
            }
            else if (op < 8)
            {
                long count = random.NextInt64(0, writer.Length + 1);
                writer.Consume(count);
                model.RemoveRange(0, (int)count);
            }
            else if (op == 8 && random.Next(5) == 0)
            {
                writer.Reset();
                model.Clear();
            }
            else
            {
                Assert.Equal(model.ToArray(), writer.ToArray());
            }
        }

        Assert.Equal(model.ToArray(), writer.ToArray());
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Options mutated while writers are created from them on other threads.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void AWriterIsNeverCreatedWithANegativeMaxLengthWhileAnotherThreadTogglesIt()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, MaxLength = 100 };
        bool stop = false;
        Thread toggler = SegmentedBuffers.Started(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                // Fenced, so no store is dropped as dead (the auto-properties of the base commit inline to plain stores).
                options.MaxLength = -5;
                Thread.MemoryBarrier();
                options.MaxLength = 100;
                Thread.MemoryBarrier();
            }
        });
        int refused = 0;
        var bad = new List<string>();
        var deadline = DateTime.UtcNow.AddSeconds(3);
        while (DateTime.UtcNow < deadline && bad.Count == 0)
        {
            for (int i = 0; i < 1000; i++)
            {
                try
                {
                    var writer = new SegmentedBufferWriter(options);
                    if (writer.MaxLength < 0)
                    {
                        bad.Add($"writer created with MaxLength {writer.MaxLength}");
                    }

                    writer.Dispose();
                    var stream = new SegmentedMemoryStream(options);
                    if (stream.MaxLength < 0)
                    {
                        bad.Add($"stream created with MaxLength {stream.MaxLength}");
                    }

                    stream.Dispose();
                }
                catch (ArgumentOutOfRangeException error)
                {
                    Assert.Equal(nameof(SegmentedBufferOptions.MaxLength), error.ParamName);
                    refused++;
                }
            }
        }

        Volatile.Write(ref stop, true);
        toggler.Join();
        TestContext.Current.TestOutputHelper?.WriteLine($"refused {refused}");
        Assert.True(bad.Count == 0, $"{bad.Count} buffers created from options that fail validation: {(bad.Count > 0 ? bad[0] : "")}; refused {refused}");
    }

    [Fact]
    public void AWriterNeverGrowsWithASegmentSizeMixThatFailsValidation()
    {
        // Valid sets: (64, 128) and (8192, 16384). Going between them passes through (8192, 128), which Validate refuses;
        // a writer built from it grows its second segment below its first (the growth is capped by MaxSegmentSize).
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 64, MaxSegmentSize = 128 };
        bool stop = false;
        Thread toggler = SegmentedBuffers.Started(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                options.InitialSegmentSize = 8192; // (8192, 128): invalid
                Thread.MemoryBarrier();
                options.MaxSegmentSize = 16384;    // (8192, 16384): valid
                Thread.MemoryBarrier();
                options.MaxSegmentSize = 128;      // (8192, 128): invalid
                Thread.MemoryBarrier();
                options.InitialSegmentSize = 64;   // (64, 128): valid
                Thread.MemoryBarrier();
            }
        });
        string? bad = null;
        var deadline = DateTime.UtcNow.AddSeconds(3);
        while (DateTime.UtcNow < deadline && bad is null)
        {
            try
            {
                using var writer = new SegmentedBufferWriter(options);
                int first = writer.GetSpan(0).Length;
                writer.Advance(first);
                int second = writer.GetSpan(0).Length;
                if (second < first)
                {
                    bad = $"first segment {first}, second {second}";
                }
            }
            catch (ArgumentOutOfRangeException)
            {
            }
        }

        Volatile.Write(ref stop, true);
        toggler.Join();
        Assert.True(bad is null, $"a writer grew with a mix that fails validation: {bad}");
        SegmentedBuffers.AssertBalanced(pool);
    }

    [Fact]
    public void AfterConcurrentChangesStopTheNextWriterTakesTheLastValues()
    {
        using var pool = new TieredMemoryPool();
        for (int round = 0; round < 200; round++)
        {
            var options = new SegmentedBufferOptions { Pool = pool, MaxLength = 10 };
            using var start = new Barrier(3);
            long last = 0;
            Thread setter = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                for (int i = 1; i <= 2000; i++)
                {
                    options.MaxLength = 1000 + i;
                }

                last = options.MaxLength;
            });
            Thread creator = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < 300; i++)
                {
                    new SegmentedBufferWriter(options).Dispose();
                }
            });
            start.SignalAndWait();
            for (int i = 0; i < 300; i++)
            {
                new SegmentedBufferWriter(options).Dispose();
            }

            setter.Join();
            creator.Join();
            using var writer = new SegmentedBufferWriter(options);
            Assert.Equal(last, writer.MaxLength);
        }
    }

    [Fact]
    public void AnInvalidOptionIsRefusedEveryTimeUntilFixedAndAWriterKeepsItsOwnSettings()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 100, MaxSegmentSize = 200, MaxLength = 50 };
        using var before = new SegmentedBufferWriter(options);
        options.InitialSegmentSize = 300;
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal("InitialSegmentSize", Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedBufferWriter(options)).ParamName);
        }

        options.MaxLength = -1;
        options.InitialSegmentSize = 100;
        Assert.Equal("MaxLength", Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentedBufferWriter(options)).ParamName);
        options.MaxLength = 70;
        using var after = new SegmentedBufferWriter(options);
        Assert.Equal(50, before.MaxLength);
        Assert.Equal(70, after.MaxLength);
        options.Pool = MemoryPool<byte>.Shared;
        options.MaxSegmentSize = 1 << 20;
        using var shared = new SegmentedBufferWriter(options);
        shared.Write(new byte[60]);
        Assert.Equal(60, shared.Length);
    }
}
