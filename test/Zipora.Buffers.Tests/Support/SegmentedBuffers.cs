using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What the segmented buffers' tests share: threads to race on, filled arrays and block addresses, the pool's balance,
/// a model step, and revived writers.
/// </summary>
internal static class SegmentedBuffers
{
    /// <summary>A background thread running <paramref name="work"/>, started.</summary>
    public static Thread Started(Action work)
    {
        var thread = new Thread(() => work()) { IsBackground = true };
        thread.Start();
        return thread;
    }

    /// <summary>A new array of <paramref name="length"/> bytes, each <paramref name="value"/>.</summary>
    public static byte[] Filled(int length, byte value)
    {
        byte[] array = new byte[length];
        array.AsSpan().Fill(value);
        return array;
    }

    /// <summary>The address of the first byte of <paramref name="memory"/> (pinned for the moment it is read).</summary>
    public static unsafe nint AddressOf(ReadOnlyMemory<byte> memory)
    {
        using MemoryHandle handle = memory.Pin();
        return (nint)handle.Pointer;
    }

    /// <summary>Every block rented went back once, nothing is in use, and no buffer is live or holds bytes.</summary>
    public static void AssertBalanced(TieredMemoryPool pool)
    {
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(statistics.Small.Rents, statistics.Small.Returns);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);
        Assert.Equal(statistics.Large.Rents, statistics.Large.Returns);
        Assert.Equal(0, statistics.Segmented.LiveBuffers);
        Assert.Equal(0, statistics.Segmented.BytesHeld);
    }

    /// <summary>
    /// The model tests' step on a live writer that holds only bytes of value <paramref name="id"/>: consumes a random
    /// part of it, resets it, or writes 1 to <paramref name="maxWrite"/> more bytes of <paramref name="id"/>.
    /// </summary>
    public static void ConsumeResetOrWrite(SegmentedBufferWriter writer, byte id, Random random, int maxWrite)
    {
        switch (random.Next(3))
        {
            case 0:
                writer.Consume(random.NextInt64(writer.Length + 1));
                break;
            case 1:
                writer.Reset();
                break;
            default:
                byte[] bytes = new byte[1 + random.Next(maxWrite)];
                Array.Fill(bytes, id);
                writer.Write(bytes);
                break;
        }
    }

    /// <summary>
    /// Drops a writer holding <paramref name="written"/> bytes, collects it, and returns it as another object's
    /// finalizer brought it back (the writer has no finalizer of its own).
    /// </summary>
    public static SegmentedBufferWriter CollectARevivedWriter(SegmentedBufferOptions options, int written = 100)
    {
        var revived = new StrongBox<SegmentedBufferWriter?>();
        DropARevivedWriter(options, written, revived);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return revived.Value!;
    }

    /// <summary>Drops a writer holding 100 bytes, to be found leaked.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void DropAWriter(SegmentedBufferOptions options) => new SegmentedBufferWriter(options).Write(new byte[100]);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropARevivedWriter(SegmentedBufferOptions options, int written, StrongBox<SegmentedBufferWriter?> revived)
    {
        var writer = new SegmentedBufferWriter(options);
        writer.Write(new byte[written]);
        _ = new Reviver(writer, revived);
    }

    /// <summary>Puts the writer it held where the test finds it again, once the collection that found both unreachable is over.</summary>
    private sealed class Reviver(SegmentedBufferWriter writer, StrongBox<SegmentedBufferWriter?> revived)
    {
        ~Reviver() => revived.Value = writer;
    }
}
