using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The caps rest on the pool's activity (rents and returns so far, see <c>LimitTrim</c> and <c>RetainedCap</c>): a trim,
/// an idle tick or a thread's exit with nothing rented or returned must leave it where it was, or every refused rent and
/// every tick over a cap would trim again for nothing. Each case leaves a thread's caches in another state, the thread
/// alive and blocked, then exited.
/// </summary>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class TrimActivityRestTests
{
    private const string ParkedBlock = "a parked block";
    private const string ParkedBlockAndEveryTierUsed = "a parked block, every tier rented from and returned to";
    private const string StreamHoldingTheParkedBlock = "a live stream holding the parked block as its spare";
    private const string EveryTierHeldAndCached = "a buffer of every tier held, another cached";
    private const string ResetWriterAndEmptiedStream = "a writer reset and a stream emptied by SetLength(0)";
    private const string HalfFreeSlabAndParkedBlock = "a slab half rented, half free, and a parked block";

    [Theory]
    [InlineData(ParkedBlock)]
    [InlineData(ParkedBlockAndEveryTierUsed)]
    [InlineData(StreamHoldingTheParkedBlock)]
    [InlineData(EveryTierHeldAndCached)]
    [InlineData(ResetWriterAndEmptiedStream)]
    [InlineData(HalfFreeSlabAndParkedBlock)]
    public void ATrimIdleTicksOrAThreadExitWithNothingUsedLeaveTheActivityAlone(string state)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        var held = new List<IMemoryOwner<byte>>();
        using var release = new ManualResetEventSlim();
        using var ready = new ManualResetEventSlim();
        SegmentedMemoryStream? stream = null;
        var thread = new Thread(() =>
        {
            switch (state)
            {
                case ParkedBlock:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    break;
                case ParkedBlockAndEveryTierUsed:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    foreach (int size in (int[])[100, 4096, 40_000, 3_000_000])
                    {
                        pool.Rent(size).Dispose();
                    }

                    break;
                case StreamHoldingTheParkedBlock:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    stream = new SegmentedMemoryStream(options);
                    break;
                case EveryTierHeldAndCached:
                    foreach (int size in (int[])[100, 4096, 40_000, 3_000_000])
                    {
                        held.Add(pool.Rent(size));
                        pool.Rent(size).Dispose();
                    }

                    break;
                case ResetWriterAndEmptiedStream:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    var writer = new SegmentedBufferWriter(options);
                    writer.Write(new byte[100]);
                    writer.Reset();
                    stream = new SegmentedMemoryStream(options);
                    stream.Write(new byte[5000]);
                    stream.SetLength(0);
                    writer.Dispose();
                    break;
                case HalfFreeSlabAndParkedBlock:
                    for (int i = 0; i < 50; i++)
                    {
                        held.Add(pool.Rent(2048));
                    }

                    for (int i = 0; i < 50; i += 2)
                    {
                        held[i].Dispose();
                    }

                    _ = ParkedBlocks.WriteMessage(options, 1);
                    break;
            }

            ready.Set();
            release.Wait();
        });
        thread.Start();
        ready.Wait();
        try
        {
            pool.Trim();
            long first = pool.RetainedAndActivity().Activity;
            pool.Trim();
            long second = pool.RetainedAndActivity().Activity;
            Assert.True(first == second, $"state {state}: a trim with nothing used moved the activity from {first} to {second}");
            SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);
            long third = pool.RetainedAndActivity().Activity;
            pool.Trim();
            long fourth = pool.RetainedAndActivity().Activity;
            Assert.True(third == fourth, $"state {state}: after idle ticks, a trim moved the activity from {third} to {fourth}");
            Assert.True(second == third, $"state {state}: idle ticks moved the activity from {second} to {third}");
        }
        finally
        {
            release.Set();
            thread.Join();
        }

        // Exited now: its caches are retired at the next trim.
        pool.Trim();
        long fifth = pool.RetainedAndActivity().Activity;
        pool.Trim();
        long sixth = pool.RetainedAndActivity().Activity;
        Assert.True(fifth == sixth, $"state {state}: after the thread's exit, a trim moved the activity from {fifth} to {sixth}");
        stream?.Dispose();
        held.ForEach(static owner => owner.Dispose());
    }
}
