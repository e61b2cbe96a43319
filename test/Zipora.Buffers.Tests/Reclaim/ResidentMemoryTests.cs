using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>Measures the process's resident memory, so it runs in a process of its own (see <see cref="IsolatedProcess"/>).</summary>
[Collection(nameof(HugepageTests))]
public sealed class ResidentMemoryTests
{
    [Fact]
    public async Task AfterABurstOfHalfAGigabyteAndAnIdleSpellResidentMemoryReturnsToItsBaseline()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(AfterABurstOfHalfAGigabyteAndAnIdleSpellResidentMemoryReturnsToItsBaseline)))
        {
            return;
        }

        if (!ProcessMemory.CanRead)
        {
            Skip.Because("resident memory is read from /proc/self/statm, which this OS does not have");
        }

        TimeSpan delay = TimeSpan.FromMilliseconds(200);
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, HugeRegionCacheMaxBytes = 1L << 30, RegionCacheMaxBytes = 1L << 30, RegionCacheMaxCount = 10_000 });
        GC.Collect();
        long baseline = ProcessMemory.ResidentBytes();

        // 544 MB across the tiers, every page touched: 16 KB, 64 KB, 1 MB and 8 MB buffers.
        var owners = new List<IMemoryOwner<byte>>();
        foreach ((int size, int count) in new[] { (16 * 1024, 2048), (64 * 1024, 512), (1024 * 1024, 160), (8 * 1024 * 1024, 40) })
        {
            for (int i = 0; i < count; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span.Fill(0xAB);
                owners.Add(owner);
            }
        }

        long peak = ProcessMemory.ResidentBytes();
        Assert.True(peak - baseline >= 512L * 1024 * 1024, $"the burst should add at least 512 MB resident, added {(peak - baseline) >> 20} MB");
        owners.ForEach(owner => owner.Dispose());

        // Wait up to 20 delays for the idle releaser; it should take about 1.5.
        long resident = peak;
        for (int i = 0; i < 20 && (resident > baseline * 1.1 || pool.GetStatistics().BytesRetained > 0); i++)
        {
            await Task.Delay(delay, TestContext.Current.CancellationToken);
            resident = ProcessMemory.ResidentBytes();
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"resident: {baseline >> 20} MB before, {peak >> 20} MB at the peak, {resident >> 20} MB after");
        Assert.True(resident <= baseline * 1.1, $"resident {resident >> 20} MB, baseline {baseline >> 20} MB, peak {peak >> 20} MB\n{pool.GetStatistics()}");
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }
}
