using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// With <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/> infinite nothing is given back in the background, but
/// returned memory is still safe from unmapping for 10 s (README, Options: "also how long returned memory is safe from
/// unmapping ... (10 s when infinite)"): a trim within them only drops its pages, one after them unmaps it.
/// </summary>
public sealed class InfiniteDelayGuardTests
{
    private static readonly TimeSpan s_guard = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_moment = TimeSpan.FromMilliseconds(100);

    [Theory]
    [InlineData(100_000)]
    [InlineData(3_000_000)]
    public void WithAnInfiniteDelayReturnedMemoryIsSafeFromUnmappingForTenSeconds(int size)
    {
        Skip.Unless(ProcessMappings.CanRead, "mappings are read from /proc/self/maps (Linux)");
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            TimeProvider = time,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
            EnableHugepages = false,
        });
        IMemoryOwner<byte> owner = pool.Rent(size);
        OwnerRange range = SafetyCases.RangeOf(owner);
        owner.Dispose();

        // Trims all through the guard: each lets go of the region at once, none may unmap it.
        pool.Trim();
        for (TimeSpan step = s_guard / 8; time.GetUtcNow() - time.Start + step < s_guard; )
        {
            SafetyCases.Advance(time, step);
            pool.Trim();
            Assert.True(
                ProcessMappings.IsMapped(range.Start, range.Length),
                $"{range} was unmapped {(time.GetUtcNow() - time.Start).TotalSeconds:F2} s after its return, within the 10 s an infinite delay guards");
            Assert.True(pool.GetStatistics().BytesAwaitingRelease >= range.Length, "the region let go of is not counted as awaiting release");
        }

        SafetyCases.Advance(time, (s_guard - (time.GetUtcNow() - time.Start)) - s_moment);
        pool.Trim();
        Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range} was unmapped a moment before 10 s after its return");

        // Past the guard (and the tick that follows it) a trim unmaps it.
        SafetyCases.Advance(time, s_guard);
        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesAwaitingRelease);
        Assert.Equal(statistics.MmapCalls, statistics.MunmapCalls);
    }
}
