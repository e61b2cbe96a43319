namespace Zipora.Buffers.Tests;

/// <summary>
/// The cgroup timer reads ten times a second close to the limit and once a second far from it or with none: each of
/// its wakes costs an idle process CPU, and ten a second cost one 1.15% of a core.
/// </summary>
public sealed class CgroupWatchPeriodTests
{
    private const long Megabyte = 1024 * 1024;

    [Theory]
    [InlineData(0, 0, CgroupWatchPeriod.LongestMilliseconds)] // no limit: only a late one to find
    [InlineData(100 * Megabyte, 0, CgroupWatchPeriod.LongestMilliseconds)]
    [InlineData(1024 * Megabyte, 4096 * Megabyte, CgroupWatchPeriod.LongestMilliseconds)] // 2.4 GB of headroom
    [InlineData(300 * Megabyte, 512 * Megabyte, 135)] // 135 MB to the pressure share: 135 ms at 1 GB/s
    [InlineData(430 * Megabyte, 512 * Megabyte, CgroupWatchPeriod.ShortestMilliseconds)] // 5 MB short of it
    [InlineData(600 * Megabyte, 512 * Megabyte, CgroupWatchPeriod.ShortestMilliseconds)] // past it
    public void TheTimerWaitsTheTimeTheFastestGrowthTakesToReachThePressureShareWithinItsBounds(long usage, long limit, int expected)
    {
        Assert.Equal(expected, CgroupWatchPeriod.NextMilliseconds(usage, limit));
    }
}
