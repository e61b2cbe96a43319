using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab class's high-water mark is the most buffers in use at once over this demand window and the last (a window
/// is one idle delay): a peak just before a window turns over must not vanish the moment it does, or the figure
/// falls to whatever the new window's first sample saw.
/// </summary>
public sealed class SlabHighWaterMarkTests
{
    private const int Held = 10;

    [Theory]
    [InlineData(100, 112, "small")]
    [InlineData(4096, 4096, "medium")]
    public void APeakOfTheLastWindowStaysTheHighWaterMarkThroughTheNextAndAgesOutAfter(int size, int classSize, string tier)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, time));

        // Held across one tick, so the sample sees them in use; then none is in use again.
        List<IMemoryOwner<byte>> held = [.. Enumerable.Range(0, Held).Select(_ => pool.Rent(size))];
        SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
        held.ForEach(static owner => owner.Dispose());
        Assert.Equal(Held, HighWaterMark(pool, tier, classSize));

        // A delay on, a new window has begun whose samples all saw nothing in use: the last window's peak still counts.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        long inTheNextWindow = HighWaterMark(pool, tier, classSize);
        Assert.True(
            inTheNextWindow == Held,
            $"one delay after {Held} {tier} buffers were in use at once (none since), the high-water mark is {inTheNextWindow}: the last window's peak was dropped");

        // Two delays on, both windows have passed.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);
        Assert.Equal(0, HighWaterMark(pool, tier, classSize));
    }

    private static long HighWaterMark(TieredMemoryPool pool, string tier, int classSize) =>
        pool.GetStatistics().SizeHistogram.Single(row => row.Tier == tier && row.ClassSize == classSize).HighWaterMark;
}
