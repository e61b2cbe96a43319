using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class CapProbeTests
{
    // One size per tier: small, medium of another class than the parked 4 KB, large, huge.
    public static TheoryData<int, int, bool> Cases()
    {
        var data = new TheoryData<int, int, bool>();
        foreach (int size in (int[])[512, 8192, 65536, 3 * 1024 * 1024])
        {
            foreach (int how in (int[])[0, 1])
            {
                data.Add(size, how, false);
                data.Add(size, how, true);
            }
        }

        return data;
    }

    /// <summary>Bytes a rent of <paramref name="size"/> maps in a fresh pool.</summary>
    private static long MappedFor(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false, TimeProvider = new FakeTimeProvider(), IdleReleaseDelay = SafetyCases.IdleDelay });
        using IMemoryOwner<byte> owner = pool.Rent(size);
        TieredMemoryPoolStatistics s = pool.GetStatistics();
        return s.Small.BytesAllocated + s.Medium.BytesAllocated + s.Large.BytesAllocated + s.Huge.BytesAllocated;
    }

    // how 0: the parking thread exits; 1: it stays alive, blocked.
    [Theory]
    [MemberData(nameof(Cases))]
    public void ARentAtTheCapIsServedByTheParkedBlocksSlab(int size, int how, bool reuseOwners)
    {
        long needed = MappedFor(size);
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            EnableHugepages = false,
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
            MaxBytesInUse = Math.Max(needed, 64 * 1024),
            ReuseOwners = reuseOwners,
        });
        var options = new SegmentedBufferOptions { Pool = pool };
        using var parked = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            _ = ParkedBlocks.WriteMessage(options, 7);
            parked.Set();
            if (how == 1)
            {
                release.Wait();
            }
        });
        thread.Start();
        parked.Wait();
        if (how == 0)
        {
            thread.Join();
        }

        try
        {
            TieredMemoryPoolStatistics before = pool.GetStatistics();
            Assert.Equal(0, before.BytesInUse);
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(3);
        }
        finally
        {
            release.Set();
            thread.Join();
        }
    }
}
