using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>What the parked-block tests share: their pool, a one-segment message, and waiting for blocks to be unmapped.</summary>
internal static class ParkedBlocks
{
    /// <summary>A message of one medium block (1 KB in the default 4 KB first segment).</summary>
    public const int Message = 1024;

    public static TieredMemoryPool NewPool(FakeTimeProvider time) =>
        new(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });

    /// <summary>A one-segment message written, read back and let go of; returns the address of its block.</summary>
    public static nint WriteMessage(SegmentedBufferOptions options, byte stamp)
    {
        using var writer = new SegmentedBufferWriter(options);
        Memory<byte> memory = writer.GetMemory(Message);
        memory.Span[..Message].Fill(stamp);
        writer.Advance(Message);
        Assert.True(writer.GetReadOnlySequence().FirstSpan.IndexOfAnyExcept(stamp) < 0, $"message {stamp} did not read back as written");
        return SegmentedBuffers.AddressOf(memory);
    }

    /// <summary>
    /// Collects and moves the fake clock on a quarter delay at a time until none of <paramref name="blocks"/> is mapped,
    /// for ten delays at most; the blocks still mapped then (none when it worked).
    /// </summary>
    public static List<nint> StillMappedAfterTheDelays(FakeTimeProvider time, IReadOnlyCollection<nint> blocks)
    {
        for (int step = 0; step < 40 && blocks.Any(static block => ProcessMappings.IsMapped(block, Message)); step++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            Thread.Sleep(10);
        }

        return [.. blocks.Where(static block => ProcessMappings.IsMapped(block, Message))];
    }

    /// <summary>Whether <paramref name="block"/> is unmapped within ten delays (see <see cref="StillMappedAfterTheDelays"/>).</summary>
    public static bool UnmappedWithin(FakeTimeProvider time, nint block) => StillMappedAfterTheDelays(time, [block]).Count == 0;
}
