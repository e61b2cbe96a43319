using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A dispose raises the writer's disposed flag, then takes the guard to release the segments: on the disposing thread
/// a few instructions later, or, when a call was inside the guard, as that call leaves (after the dispose returned).
/// In between the guard reads free with the flag up, and a quiet read (the common <c>GetSpan</c>, <c>GetMemory</c>
/// and <c>GetReadOnlySequence</c>, which do not take the guard) sees no call run: were it to hand out the tail's
/// memory, the release that follows would give that block to the pool's next renter under the caller's
/// <c>Span</c>, for a call made after <c>Dispose</c> returned. The quiet read checks the flag after its read. No thread
/// can be held in that window, so the test puts the writer in the state it leaves: the flag up, the guard free.
/// </summary>
public sealed class QuietReadDuringDisposeTests
{
    [Theory]
    [InlineData("GetSpan")]
    [InlineData("GetMemory")]
    [InlineData("GetReadOnlySequence")]
    public void AQuietReadAfterTheDisposedFlagRoseThrowsBeforeTheReleaseTakesTheGuard(string call)
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        writer.Write("some bytes"u8);

        // Where a dispose stands between its flag and its release: raised, the guard still free.
        Volatile.Write(ref DisposedFlagOf(ref ChainOf(writer)), 1);

        Exception? thrown = Record.Exception(() => Read(writer, call));
        Assert.True(thrown is ObjectDisposedException, $"{call} with the disposed flag up and the release still to come: {thrown?.GetType().Name ?? "handed out the segments' memory"}");

        // The release the dispose was about to make; then every block is back.
        writer.Dispose();
        SegmentedBuffers.AssertBalanced(pool);
    }

    private static void Read(SegmentedBufferWriter writer, string call)
    {
        switch (call)
        {
            case "GetSpan":
                _ = writer.GetSpan(16).Length;
                break;
            case "GetMemory":
                _ = writer.GetMemory(16);
                break;
            default:
                _ = writer.GetReadOnlySequence();
                break;
        }
    }

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_chain")]
    private static extern ref SegmentChain ChainOf(SegmentedBufferWriter writer);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_disposed")]
    private static extern ref int DisposedFlagOf(ref SegmentChain chain);
}
