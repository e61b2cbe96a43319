using System;
using System.Buffers;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent that throws (a size out of range, a disposed pool, the pool's cap) takes no block in any owner mode: nothing
/// counted in use, nothing for the leak reclaim to find once the owner made before the block is collected.
/// </summary>
public sealed class RefusedRentLeavesNothingSafetyTests
{
    private const int MaxBufferSize = 4 * 1024 * 1024;

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string mode in new[] { "Default", "ReuseOwners", "PinnedArrays", "Sampled", "All" })
        {
            foreach (int size in new[] { -1, 0, 1, 1023, 1024, 16384, 16385, 2 * 1024 * 1024, (2 * 1024 * 1024) + 1, MaxBufferSize })
            {
                data.Add(mode, size);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ARefusedRentLeavesNoBlockInUseOrForTheLeakReclaim(string mode, int size)
    {
        var time = new FakeTimeProvider();
        var options = new TieredMemoryPoolOptions
        {
            ReuseOwners = mode == "ReuseOwners",
            UsePinnedArrays = mode == "PinnedArrays",
            Diagnostics = mode switch { "Sampled" => DiagnosticLevel.Sampled, "All" => DiagnosticLevel.All, _ => DiagnosticLevel.Off },
            DiagnosticSampleRate = 2,
            MaxBufferSize = MaxBufferSize,
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
        };

        // At the cap: a pool whose one rent of the size fills it refuses the second, which needs a mapping of its own.
        using (var capped = new TieredMemoryPool(options))
        {
            using IMemoryOwner<byte> first = capped.Rent(size);
            long cap = capped.GetStatistics().MmapCalls > 0 ? ProcessMappedBytes(capped) : 0;
            options.MaxBytesInUse = Math.Max(cap, 1);
        }

        using var pool = new TieredMemoryPool(options);
        IMemoryOwner<byte> held = pool.Rent(size);
        RentThrows<InsufficientMemoryException>(pool, size, mode, "past the cap", allowSuccess: true);
        RentThrows<ArgumentOutOfRangeException>(pool, -2, mode, "of -2", allowSuccess: false);
        RentThrows<ArgumentOutOfRangeException>(pool, MaxBufferSize + 1, mode, "above MaxBufferSize", allowSuccess: false);
        held.Dispose();

        TieredMemoryPoolStatistics quiet = pool.GetStatistics();
        Assert.True(quiet.BytesInUse == 0, $"{mode}, {size} B: {quiet.BytesInUse} bytes counted in use after the refused rents, every rent that succeeded returned\n{quiet}");
        SafetyCases.CollectEverything();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        SafetyCases.CollectEverything();
        TieredMemoryPoolStatistics later = pool.GetStatistics();
        Assert.True(later.LeaksReclaimed == 0 && later.LeaksDetected == 0, $"{mode}, {size} B: a refused rent left a block for the leak reclaim ({later.LeaksReclaimed} reclaimed, {later.LeaksDetected} detected)\n{later}");

        pool.Dispose();
        RentThrows<ObjectDisposedException>(pool, size, mode, "of a disposed pool", allowSuccess: false);
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
    }

    private static long ProcessMappedBytes(TieredMemoryPool pool)
    {
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        return statistics.Small.BytesAllocated + statistics.Medium.BytesAllocated + statistics.Large.BytesAllocated + statistics.Huge.BytesAllocated;
    }

    private static void RentThrows<TException>(TieredMemoryPool pool, int size, string mode, string what, bool allowSuccess)
        where TException : Exception
    {
        long inUse = pool.GetStatistics().BytesInUse;
        IMemoryOwner<byte>? owner = null;
        try
        {
            owner = pool.Rent(size);
        }
        catch (TException)
        {
            TieredMemoryPoolStatistics after = pool.GetStatistics();
            Assert.True(after.BytesInUse == inUse, $"{mode}: a rent of {size} B {what} threw {typeof(TException).Name} and left {after.BytesInUse - inUse} more bytes counted in use\n{after}");
            return;
        }

        owner.Dispose();
        Assert.True(allowSuccess, $"{mode}: a rent of {size} B {what} did not throw {typeof(TException).Name}");
    }
}
