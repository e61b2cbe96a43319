using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>Measures resident memory, so it runs in a process of its own (see <see cref="IsolatedProcess"/>).</summary>
[Collection(nameof(HugepageTests))]
public sealed class SoakTests
{
    /// <summary>Seconds to soak; ZIPORA_SOAK_SECONDS makes it longer outside CI.</summary>
    private static int SoakSeconds =>
        int.TryParse(Environment.GetEnvironmentVariable("ZIPORA_SOAK_SECONDS"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int seconds) ? seconds : 30;

    [Fact]
    public void UnderMixedTrafficResidentAndRetainedMemoryStayFlat()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(UnderMixedTrafficResidentAndRetainedMemoryStayFlat)))
        {
            return;
        }

        if (!ProcessMemory.CanRead)
        {
            Skip.Because("resident memory is read from /proc/self/statm, which this OS does not have");
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromSeconds(1) });
        TimeSpan soak = TimeSpan.FromSeconds(SoakSeconds);
        var residentSamples = new List<long>();
        var retainedSamples = new List<long>();
        var clock = Stopwatch.StartNew();
        TimeSpan nextSample = soak / 4;
        while (clock.Elapsed < soak)
        {
            Parallel.For(0, 4, worker => Traffic(pool, new Random(worker + (int)clock.ElapsedMilliseconds)));
            if (clock.Elapsed >= nextSample)
            {
                residentSamples.Add(ProcessMemory.ResidentBytes());
                retainedSamples.Add(pool.GetStatistics().BytesRetained);
                nextSample += soak / 4;
            }
        }

        // After the first quarter has warmed the caches, memory must not creep: each later sample stays within
        // 64 MB of the first one (a leak of one 16 KB buffer per round would add hundreds of megabytes).
        Assert.True(residentSamples.Count >= 3, $"only {residentSamples.Count} samples");
        foreach (long resident in residentSamples)
        {
            Assert.InRange(resident, 0, residentSamples[0] + (64L << 20));
        }

        foreach (long retained in retainedSamples)
        {
            Assert.InRange(retained, 0, retainedSamples[0] + (64L << 20));
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    private static void Traffic(TieredMemoryPool pool, Random random)
    {
        var held = new Queue<IMemoryOwner<byte>>();
        for (int i = 0; i < 2_000; i++)
        {
            int size = random.Next(100) switch
            {
                < 50 => random.Next(1, 1024),
                < 90 => random.Next(1024, 16385),
                < 99 => random.Next(16385, 512 * 1024),
                _ => random.Next(2 * 1024 * 1024, 5 * 1024 * 1024),
            };
            IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span[..Math.Min(size, 4096)].Fill((byte)i);
            held.Enqueue(owner);
            if (held.Count > 32)
            {
                held.Dequeue().Dispose();
            }
        }

        while (held.TryDequeue(out IMemoryOwner<byte>? owner))
        {
            owner.Dispose();
        }
    }
}
