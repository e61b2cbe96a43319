using System;
using System.Buffers;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="MixedTiersAtTheCapSafetyTests"/> on pinned arrays (what <c>AddTieredMemoryPool</c> gives Kestrel), with
/// and without diagnostic mode: threads renting every tier's sizes at once, returning on other threads, with and
/// without another thread trimming, at a cap that holds the most they can hold at once and no more. Pinned arrays'
/// pages cannot be dropped, so what a trim at the cap let go of counted for a whole delay, and rents of other lengths
/// were refused with their buffers fitting under the cap: 60 to 1,090 of 7-8 million rents a run, and in diagnostic
/// mode (guarded regions, never reused) 30,000 of 70,000. Measured from inside only: a pinned array's memory is the
/// GC's, so the pool's own figures say what is mapped.
/// </summary>
public sealed class PinnedMixedTiersAtTheCapSafetyTests
{
    private static readonly int[] s_sizes = [64, 4096, 100_000, 3_000_000];
    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(2);

    [Theory]
    [InlineData(3, 3, false, false)]
    [InlineData(2, 4, true, false)]
    [InlineData(3, 3, false, true)]
    [InlineData(2, 4, true, true)]
    public void MixedRentersAtThePinnedCapAreNeverRefusedAndLeaveNothing(int permitsPerSize, int workers, bool trims, bool diag)
    {
        long[] units = [.. s_sizes.Select(size => One(size, diag))];
        long cap = permitsPerSize * units.Sum();
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, time);
        options.Diagnostics = diag ? DiagnosticLevel.All : DiagnosticLevel.Off;
        options.MaxBytesInUse = cap;
        var pool = new TieredMemoryPool(options);

        var storm = new CapStorm(pool, s_sizes, permitsPerSize, $"a cap of {cap} ({string.Join(", ", units)} per size, {permitsPerSize} of each at most)");
        storm.Run(workers, trims, s_budget);

        SafetyCases.AssertDisjoint(storm.Held, "held at the end");
        TieredMemoryPoolStatistics held = pool.GetStatistics();
        Assert.True(Mapped(held) <= cap, $"{Mapped(held)} bytes mapped with blocks held at the end, at a cap of {cap}\n{held}");
        storm.ReturnAll();


        Assert.True(storm.Failures.IsEmpty, string.Join("\n", storm.Failures.Take(5)));
        // None may be refused, with or without the trims' thread (the races MixedTiersAtTheCapSafetyTests lists are closed).
        Assert.True(storm.Refusals.IsEmpty, $"{storm.Refusals.Count} of {storm.Rents + storm.Refusals.Count} rents refused by {workers} threads with at most {permitsPerSize} blocks of each size live; first: {storm.Refusals.FirstOrDefault()}\nheld at the end: {held}");

        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        TieredMemoryPoolStatistics idle = pool.GetStatistics();
        Assert.True(idle.BytesInUse == 0, $"{idle.BytesInUse} bytes in use after every block came back\n{idle}");
        Assert.True(idle.Small.BytesRetained + idle.Medium.BytesRetained + idle.Large.BytesRetained + idle.Huge.BytesRetained + idle.BytesAwaitingRelease == 0, idle.ToString());
        Assert.Equal(0, Mapped(idle));
        pool.Dispose();
    }

    /// <summary>What the tiers hold mapped: allocated less evicted (a mapping let go of is evicted at its unmap, or when it serves another tier).</summary>
    private static long Mapped(TieredMemoryPoolStatistics s) => s.Small.BytesAllocated - s.Small.BytesEvicted + s.Medium.BytesAllocated - s.Medium.BytesEvicted + s.Large.BytesAllocated - s.Large.BytesEvicted + s.Huge.BytesAllocated - s.Huge.BytesEvicted;

    /// <summary>The bytes mapped for one buffer of <paramref name="size"/>, alone in a pool of pinned arrays.</summary>
    private static long One(int size, bool diag)
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, new FakeTimeProvider());
        options.Diagnostics = diag ? DiagnosticLevel.All : DiagnosticLevel.Off;
        using var pool = new TieredMemoryPool(options);
        using IMemoryOwner<byte> owner = pool.Rent(size);
        return Mapped(pool.GetStatistics());
    }
}
