using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The position's setter and <c>Seek</c> take no guard, so a thread misusing a stream may move the position while
/// another thread's read or write is inside: that call must still use one position throughout.
/// </summary>
public sealed class SegmentedStreamPositionRaceSafetyTests
{
    private const long MaxLength = 100_000;

    /// <summary>
    /// A write read the position again after checking it against MaxLength: a position moved past MaxLength meanwhile
    /// zero-filled the stream up to it (1 GB for a limit of 100 KB, in a run with <c>1 &lt;&lt; 30</c>), and one moved
    /// back made the write slice outside its data or search for a segment past the tail (ArgumentOutOfRangeException,
    /// NullReferenceException).
    /// </summary>
    [Fact]
    public async Task APositionMovedByAnotherThreadDuringAWriteNeitherTakesTheStreamPastMaxLengthNorBreaksTheCall()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false });
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64, MaxLength = MaxLength };
        string? failure = null;
        long longest = 0;
        var clock = Stopwatch.StartNew();
        for (int round = 0; round < 2000 && failure is null && clock.Elapsed < TimeSpan.FromSeconds(4); round++)
        {
            using var stream = new SegmentedMemoryStream(options);
            stream.Write(new byte[5000]);
            using var stop = new CancellationTokenSource();
            int seed = round;
            Task mover = Task.Run(
                () =>
                {
                    var random = new Random(seed);
                    while (!stop.IsCancellationRequested)
                    {
                        stream.Position = random.Next(2) == 0 ? MaxLength + 1 : random.Next(0, 6000);
                    }
                },
                TestContext.Current.CancellationToken);
            byte[] data = new byte[300];
            for (int call = 0; call < 2000 && failure is null; call++)
            {
                try
                {
                    if (call % 2 == 0)
                    {
                        stream.Write(data);
                    }
                    else
                    {
                        _ = stream.Read(data);
                        _ = stream.ReadByte();
                    }

                    longest = Math.Max(longest, stream.Length);
                    if (call % 100 == 0)
                    {
                        stream.SetLength(4000);
                    }
                }
                catch (IOException)
                {
                    // Past MaxLength: refused, as documented.
                }
                catch (Exception exception)
                {
                    failure = exception.ToString();
                }
            }

            await stop.CancelAsync();
            await mover;
        }

        Assert.Null(failure);
        Assert.InRange(longest, 0, MaxLength);
        SegmentedBuffers.AssertBalanced(pool);
    }
}
