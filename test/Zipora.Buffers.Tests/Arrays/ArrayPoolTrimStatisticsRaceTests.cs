using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Statistics read while a trim empties the depots of a quiet pool (every array returned): a trim runs on its own, from
/// the pressure watch after a collection or from the idle tick, so a reader cannot avoid it, and must find every array
/// allocated either retained or evicted. A trim that emptied a depot and counted its arrays evicted only after the last
/// depot showed them as neither meanwhile; in a heap-limit child's statistics, read right after the collection that
/// started the pressure trim, an array was "allocated, but 0 in use + 0 retained + 0 evicted".
/// </summary>
public sealed class ArrayPoolTrimStatisticsRaceTests
{
    // Lengths of many classes, so a trim spends a while among the depots: the window a reader must never see into.
    private static readonly int[] s_lengths = [16, 64, 256, 1024, 4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152, 65536];

    private const int ArraysPerClass = 4;

    [Fact]
    public void StatisticsReadDuringATrimCountEveryArrayRetainedOrEvicted()
    {
        // No thread stacks: every array returned goes to its class's depot, which the trim empties.
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { ThreadCacheMaxArrays = 0, IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        var held = new byte[s_lengths.Length * ArraysPerClass][];
        (string? lost, int readsDuringATrim) = ReadsDuringTrims.Run(
            refill: () =>
            {
                // Fill every depot again: the rents find the arrays the last trim left (none) or allocate.
                for (int i = 0; i < held.Length; i++)
                {
                    held[i] = pool.Rent(s_lengths[i % s_lengths.Length]);
                }

                foreach (byte[] array in held)
                {
                    pool.Return(array);
                }
            },
            trim: pool.Trim,
            wrongRead: () =>
            {
                TierStatistics arrays = pool.GetStatistics().Arrays;
                return arrays.BytesAllocated == arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted
                    ? null
                    : $"{arrays.BytesAllocated} bytes allocated, but {arrays.BytesInUse} in use + {arrays.BytesRetained} retained + {arrays.BytesEvicted} evicted";
            });

        Assert.True(lost is null, $"read during a trim of a quiet pool: {lost}");
        Assert.True(readsDuringATrim > 0, "no read met a trim, so the test proves nothing");
        TierStatistics after = pool.GetStatistics().Arrays;
        Assert.Equal(after.BytesAllocated, after.BytesEvicted);
    }
}
