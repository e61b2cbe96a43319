using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent refused at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> trims the pool first. When live blocks pin
/// every free one, that trim gives nothing back, and one after it with no rent or return in between cannot either.
/// </summary>
public sealed class RefusedRentTrimTests
{
    private const int Megabyte = 1024 * 1024;

    // Thread CPU time comes in clock ticks of USER_HZ (100 on every Linux ABI .NET runs on).
    private static readonly TimeSpan s_tick = TimeSpan.FromMilliseconds(10);

    [Fact]
    public void RefusedRentsWithNothingReturnedSinceTheLastTrimDoNotWalkEveryFreeBlockAgain()
    {
        Skip.Unless(File.Exists("/proc/thread-self/stat"), "needs the thread's CPU time from /proc/thread-self/stat");
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 4 * Megabyte, EnableHugepages = false });

        // Every other 16-byte block free: no page of the small tier is free, so a trim drops nothing, but walks
        // every free block (a hundred thousand of them) to find that out.
        var owners = new List<IMemoryOwner<byte>>();
        Assert.Throws<InsufficientMemoryException>(() => RentUntilRefused(pool, owners));
        for (int i = 0; i < owners.Count; i += 2)
        {
            owners[i].Dispose();
        }

        TimeSpan start = ThreadCpu();
        Assert.Throws<InsufficientMemoryException>(() => pool.Rent(Megabyte));
        TimeSpan first = ThreadCpu() - start;

        start = ThreadCpu();
        for (int i = 0; i < 10; i++)
        {
            Assert.Throws<InsufficientMemoryException>(() => pool.Rent(Megabyte));
        }

        TimeSpan later = ThreadCpu() - start;

        // Measured before: each refusal walked every free block again, 10 refusals cost 10 times the first.
        Assert.True(later <= first + (2 * s_tick), $"10 refused rents after the first took {later.TotalMilliseconds} ms of CPU; the first, which trimmed, {first.TotalMilliseconds} ms.");

        // A return is what can make memory releasable: the next refusal trims again, and the block is let go of.
        for (int i = 1; i < owners.Count; i += 2)
        {
            owners[i].Dispose();
        }

        using IMemoryOwner<byte> fits = pool.Rent(Megabyte);
        Assert.Equal(0, pool.GetStatistics().Small.BytesInUse);
    }

    private static void RentUntilRefused(TieredMemoryPool pool, List<IMemoryOwner<byte>> owners)
    {
        while (true)
        {
            owners.Add(pool.Rent(16));
        }
    }

    /// <summary>CPU time the calling thread has used (user plus system).</summary>
    private static TimeSpan ThreadCpu()
    {
        string stat = File.ReadAllText("/proc/thread-self/stat");
        string[] afterName = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long ticks = long.Parse(afterName[11], CultureInfo.InvariantCulture) + long.Parse(afterName[12], CultureInfo.InvariantCulture);
        return ticks * s_tick;
    }
}
