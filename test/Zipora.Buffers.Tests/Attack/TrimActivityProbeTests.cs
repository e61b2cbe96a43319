using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class TrimActivityProbeTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void ATrimWithNothingUsedSinceTheLastLeavesTheActivityAlone(int state)
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
                case 0:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    break;
                case 1:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    foreach (int size in (int[])[100, 4096, 40_000, 3_000_000])
                    {
                        pool.Rent(size).Dispose();
                    }

                    break;
                case 2:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    stream = new SegmentedMemoryStream(options);
                    break;
                case 3:
                    foreach (int size in (int[])[100, 4096, 40_000, 3_000_000])
                    {
                        held.Add(pool.Rent(size));
                        pool.Rent(size).Dispose();
                    }

                    break;
                case 4:
                    _ = ParkedBlocks.WriteMessage(options, 1);
                    var writer = new SegmentedBufferWriter(options);
                    writer.Write(new byte[100]);
                    writer.Reset();
                    stream = new SegmentedMemoryStream(options);
                    stream.Write(new byte[5000]);
                    stream.SetLength(0);
                    writer.Dispose();
                    break;
                default:
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
