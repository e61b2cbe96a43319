using System;
using System.Buffers;
using System.Threading;
using System.Threading.Tasks;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Two buffers copied into each other at once from two threads (A into B while B into A), as two pipeline stages wired
/// to each other by mistake: each copy holds its own buffer and calls into the other, which the other's copy holds.
/// Neither may deadlock or corrupt: each copy completes, appending the other's contents as they were (both complete only
/// when one ran whole before the other), or is refused with
/// <see cref="InvalidOperationException"/>; a buffer never holds a byte that is not its own or the other's.
/// </summary>
public sealed class SegmentedCrossCopySafetyTests
{
    private const byte A = 0xA1;
    private const byte B = 0xB2;

    [Fact]
    public void TwoWritersCopiedIntoEachOtherAtOnceAreRefusedOrAppendTheOthersContentsWhole()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        int refused = 0;
        for (int round = 0; round < 200; round++)
        {
            using var a = new SegmentedBufferWriter(options);
            using var b = new SegmentedBufferWriter(options);
            a.Write(Filled(20_000, A));
            b.Write(Filled(20_000, B));
            using var start = new Barrier(2);
            bool aRefused = false;
            bool bRefused = false;
            Thread other = Started(() => bRefused = CopyOrRefused(start, b, a));
            aRefused = CopyOrRefused(start, a, b);
            other.Join();
            refused += (aRefused ? 1 : 0) + (bRefused ? 1 : 0);

            // A copy that went through appended the other's contents (as they were when it read them) after its own.
            AssertHolds(b, B, aRefused ? (byte)0 : A);
            AssertHolds(a, A, bRefused ? (byte)0 : B);
        }

        TestContext.Current.SendDiagnosticMessage($"{refused} of 400 cross copies refused");
        AssertBalanced(pool);
    }

    [Fact]
    public async Task TwoStreamsCopiedIntoEachOtherAsynchronouslyAtOnceAreRefusedOrAppendTheOthersContentsWhole()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };
        for (int round = 0; round < 100; round++)
        {
            await using var a = new SegmentedMemoryStream(options);
            await using var b = new SegmentedMemoryStream(options);
            a.Write(Filled(20_000, A));
            b.Write(Filled(20_000, B));
            a.Position = 0;
            b.Position = 0;
            Task ab = Task.Run(() => a.CopyToAsync(b), TestContext.Current.CancellationToken);
            Task ba = Task.Run(() => b.CopyToAsync(a), TestContext.Current.CancellationToken);
            Exception? abError = await Record.ExceptionAsync(() => ab);
            Exception? baError = await Record.ExceptionAsync(() => ba);
            Assert.True(abError is null or InvalidOperationException, $"A into B ended with {abError}");
            Assert.True(baError is null or InvalidOperationException, $"B into A ended with {baError}");
            foreach (SegmentedMemoryStream stream in new[] { a, b })
            {
                byte[] held = stream.ToArray();
                Assert.True(held.Length is 20_000 or 40_000 or 60_000 && !held.AsSpan().ContainsAnyExcept(A, B), $"a stream holds {held.Length} bytes, some neither A's nor B's");
            }
        }

        AssertBalanced(pool);
    }

    private static bool CopyOrRefused(Barrier start, SegmentedBufferWriter from, SegmentedBufferWriter into)
    {
        start.SignalAndWait();
        try
        {
            from.CopyTo(into);
            return false;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    private static void AssertHolds(SegmentedBufferWriter writer, byte own, byte appended)
    {
        byte[] held = writer.ToArray();
        Assert.False(held.AsSpan(0, 20_000).ContainsAnyExcept(own), "a writer's own bytes changed");
        if (appended == 0)
        {
            // Refused partway, a copy may have appended part of the other's bytes before the refusal: only theirs.
            Assert.False(held.AsSpan(20_000).ContainsAnyExcept(A, B), "a refused copy appended bytes of no one");
        }
        else
        {
            // The other's contents as its copy found them: its own bytes, and, when its own copy into this one ran whole
            // before (the two serialized), this writer's bytes it had appended.
            ReadOnlySpan<byte> copied = held.AsSpan(20_000);
            bool before = copied.Length == 20_000 && !copied.ContainsAnyExcept(appended);
            bool after = copied.Length == 40_000 && !copied[..20_000].ContainsAnyExcept(appended) && !copied[20_000..].ContainsAnyExcept(own);
            Assert.True(before || after, $"a copy appended {copied.Length} bytes that are not the other's contents");
        }
    }
}
