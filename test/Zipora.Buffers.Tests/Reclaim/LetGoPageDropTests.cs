using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Memory returned less than one delay ago that the pool lets go of at once (<see cref="TieredMemoryPool.Trim"/>,
/// the pool's dispose) leaves resident memory then, and stays mapped until its delay is over (README, Disposal: "younger
/// memory has its pages dropped now (resident memory falls at once) and is unmapped when its delay is over").
/// Measured with <c>mincore</c> on the buffers themselves, not with the pool's counters.
/// </summary>
public sealed class LetGoPageDropTests
{
    private const int Buffers = 4;
    private static readonly TimeSpan s_period = SafetyCases.IdleDelay / 4;

    public enum LetGo
    {
        Trim,
        DisposeThePool,
    }

    [Theory]
    [InlineData(100_000, LetGo.Trim)]
    [InlineData(100_000, LetGo.DisposeThePool)]
    [InlineData(3_000_000, LetGo.Trim)]
    [InlineData(3_000_000, LetGo.DisposeThePool)]
    public void RecentlyReturnedRegionsLetGoOfLeaveResidentMemoryAtOnceAndStayMappedUntilTheirDelay(int size, LetGo how)
    {
        Skip.Unless(ProcessMappings.CanRead, "residency is read with mincore and mappings from /proc/self/maps (Linux)");
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
            EnableHugepages = false,
        });
        try
        {
            List<OwnerRange> returned = RentTouchAndReturn(pool, size);
            Assert.All(returned, range => Assert.True(ResidentPages(range) == Pages(range), $"{range} was not resident after its owner wrote it"));

            if (how == LetGo.Trim)
            {
                pool.Trim();
            }
            else
            {
                pool.Dispose();
            }

            Assert.All(returned, range =>
            {
                Assert.True(ResidentPages(range) == 0, $"{range}, returned a moment before the pool let go of it ({how}), still has {ResidentPages(range)} of {Pages(range)} pages resident");
                Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{range} was unmapped within its delay ({how})");
            });
            Assert.True(pool.GetStatistics().BytesAwaitingRelease >= returned.Sum(static range => (long)range.Length), "the regions let go of are not counted as awaiting release");
        }
        finally
        {
            pool.Dispose();
        }

        // Unmapped once the delay is over (read from the pool: other tests may map the same addresses once they are free).
        SafetyCases.Advance(time, SafetyCases.IdleDelay + s_period + s_period);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.Equal(0, drained.BytesAwaitingRelease);
        Assert.Equal(drained.MmapCalls, drained.MunmapCalls);
    }

    private static List<OwnerRange> RentTouchAndReturn(TieredMemoryPool pool, int size)
    {
        List<IMemoryOwner<byte>> owners = [.. Enumerable.Range(0, Buffers).Select(_ => pool.Rent(size))];
        owners.ForEach(static owner => owner.Memory.Span.Fill(0xAB));
        List<OwnerRange> ranges = [.. owners.Select(SafetyCases.RangeOf)];
        owners.ForEach(static owner => owner.Dispose());
        return ranges;
    }

    private static int ResidentPages(OwnerRange range) => ProcessMappings.ResidentPages(range.Start, range.Length);

    private static int Pages(OwnerRange range) => (range.Length + Environment.SystemPageSize - 1) / Environment.SystemPageSize;
}
