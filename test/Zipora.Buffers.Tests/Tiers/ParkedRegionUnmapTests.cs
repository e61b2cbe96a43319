using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region parked in an idle thread's slot leaves the process once the delay is over, read from /proc/self/maps. It
/// runs in a process of its own: a test on another thread mapping memory meanwhile can be given the address just
/// unmapped (a fresh-clone CI run saw the pool count its munmap and the range mapped again).
/// </summary>
[Collection(nameof(HugepageTests))]
public sealed class ParkedRegionUnmapTests
{
    // A huge-tier request (above 2 MB).
    private const int HugeSize = 3 * 1024 * 1024;

    [Fact]
    public void AnIdleThreadsParkedRegionIsUnmappedAfterTheDelay()
    {
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(AnIdleThreadsParkedRegionIsUnmappedAfterTheDelay)))
        {
            return;
        }

        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay });
        nint address;
        using (IMemoryOwner<byte> owner = pool.Rent(HugeSize))
        {
            owner.Memory.Span.Fill(1);
            address = OwnerAddress.Of(owner);
        }

        Assert.Equal(pool.GetStatistics().Huge.BytesAllocated, pool.GetStatistics().Huge.BytesRetained);
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 2);

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.Huge.BytesRetained);
        Assert.Equal(0, statistics.BytesAwaitingRelease);
        Assert.Equal(1, statistics.MunmapCalls);
        Assert.False(ProcessMappings.IsMappedNow(address, HugeSize), ProcessMappings.Describe(address, HugeSize));
    }
}
