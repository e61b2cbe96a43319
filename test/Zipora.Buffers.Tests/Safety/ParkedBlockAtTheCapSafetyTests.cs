using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A thread's parked block (a segmented buffer's last, kept for the thread's next message) is memory the pool holds
/// idle: a rent of any tier at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> that it would make room for is
/// served, its trim taking the block back whether the parking thread has exited or lives on, blocked.
/// </summary>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class ParkedBlockAtTheCapSafetyTests
{
    // One size per tier: small, medium of another class than the parked 4 KB, large, huge.
    public static TheoryData<int, bool, bool> Cases()
    {
        var data = new TheoryData<int, bool, bool>();
        foreach (int size in (int[])[512, 8192, 65536, 3 * 1024 * 1024])
        {
            foreach (bool parkingThreadExits in (bool[])[true, false])
            {
                data.Add(size, parkingThreadExits, false);
                data.Add(size, parkingThreadExits, true);
            }
        }

        return data;
    }


    [Theory]
    [MemberData(nameof(Cases))]
    public void ARentOfEachTierAtTheCapIsServedByTakingBackAParkedBlock(int size, bool parkingThreadExits, bool reuseOwners)
    {
        long needed = SafetyCases.BytesMappedFor(size);
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
            if (!parkingThreadExits)
            {
                release.Wait();
            }
        });
        thread.Start();
        parked.Wait();
        if (parkingThreadExits)
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
