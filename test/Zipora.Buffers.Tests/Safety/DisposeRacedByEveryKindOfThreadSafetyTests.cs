using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool's dispose raced, from one barrier, by two more disposes, a trim, and threads of every kind: ones with caches
/// of the tier that return and rent, ones that never used the pool returning blocks others rented, and ones that exit
/// with blocks in their caches while the dispose runs. Every block still rented keeps its bytes, rents fail only as
/// disposed, and once everything is back the pool holds nothing and every mapping is unmapped, once.
/// </summary>
public sealed class DisposeRacedByEveryKindOfThreadSafetyTests
{
    private const int Rounds = 12;
    private const int Workers = 6;
    private const int HeldEach = 12;

    public static TheoryData<int, OwnerMode> Cases => SafetyCases.SizesInBothModes(100, 4096, 100_000);

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryBlockRentedAcrossTheRaceKeepsItsBytesAndEverythingIsUnmappedOnceBack(int size, OwnerMode mode)
    {
        for (int round = 0; round < Rounds; round++)
        {
            RunRound(size, mode, round);
        }
    }

    private static void RunRound(int size, OwnerMode mode, int round)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(allocator.PoolOptions(mode, time));
        var wrong = new ConcurrentQueue<string>();
        var survivors = new ConcurrentBag<(IMemoryOwner<byte> Owner, byte Mark)>();

        // Blocks for the threads without caches to return, rented here; and an exited thread's cache, full.
        var forStrangers = new List<IMemoryOwner<byte>>[Workers];
        for (int worker = 0; worker < Workers; worker++)
        {
            forStrangers[worker] = DepotReservation.Rent(pool, size, HeldEach);
        }

        Assert.Null(FreshThread.Run(() => DepotReservation.Rent(pool, size, HeldEach).ForEach(static owner => owner.Dispose())));

        using var start = new Barrier(Workers * 2 + 4);
        var threads = new List<Thread>();
        for (int worker = 0; worker < Workers; worker++)
        {
            int seed = (round * 100) + worker;
            List<IMemoryOwner<byte>> strangers = forStrangers[worker];

            // With a cache: holds marked blocks, returns half at the barrier, rents on until refused, then exits.
            threads.Add(new Thread(() => CachedWorker(pool, size, seed, start, survivors, wrong)));

            // Without one: returns blocks rented on the test's thread.
            threads.Add(new Thread(() =>
            {
                start.SignalAndWait();
                foreach (IMemoryOwner<byte> owner in strangers)
                {
                    owner.Dispose();
                }
            }));
        }

        threads.Add(new Thread(() => Guard(wrong, "trim", () => { start.SignalAndWait(); pool.Trim(); })));
        threads.Add(new Thread(() => Guard(wrong, "second dispose", () => { start.SignalAndWait(); pool.Dispose(); })));
        threads.Add(new Thread(() => Guard(wrong, "third dispose", () => { start.SignalAndWait(); pool.Dispose(); })));
        threads.ForEach(static thread => thread.Start());
        start.SignalAndWait();
        pool.Dispose();
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromSeconds(30)), "a racing thread never ended");
        }

        Assert.True(wrong.IsEmpty, string.Join("\n", wrong));

        // Rented across the race: each keeps its bytes until its return, on a thread of its own that exits.
        foreach ((IMemoryOwner<byte> owner, byte mark) in survivors)
        {
            Assert.True(owner.Memory.Span.IndexOfAnyExcept(mark) < 0, $"round {round}: a block rented across the dispose lost its bytes");
        }

        Assert.Null(FreshThread.Run(() =>
        {
            foreach ((IMemoryOwner<byte> owner, _) in survivors)
            {
                owner.Dispose();
            }
        }));
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.BytesRetained == 0 && drained.MmapCalls == drained.MunmapCalls, $"round {round}: {drained}");
        allocator.AssertNoneLive($"round {round}, three delays after the last return");
    }

    private static void CachedWorker(TieredMemoryPool pool, int size, int seed, Barrier start, ConcurrentBag<(IMemoryOwner<byte>, byte)> survivors, ConcurrentQueue<string> wrong)
    {
        var random = new Random(seed);
        var held = new List<(IMemoryOwner<byte> Owner, byte Mark)>();
        for (int i = 0; i < HeldEach; i++)
        {
            held.Add(Marked(pool.Rent(size), (byte)random.Next(1, 256)));
        }

        // A few back into this thread's cache before the race, so its exit leaves them there.
        for (int i = 0; i < 3; i++)
        {
            pool.Rent(size).Dispose();
        }

        start.SignalAndWait();
        for (int i = 0; i < HeldEach / 2; i++)
        {
            held[i].Owner.Dispose();
        }

        held.RemoveRange(0, HeldEach / 2);
        for (int i = 0; i < 200; i++)
        {
            try
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                if (random.Next(2) == 0)
                {
                    owner.Dispose();
                }
                else
                {
                    held.Add(Marked(owner, (byte)random.Next(1, 256)));
                }
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            catch (Exception error)
            {
                wrong.Enqueue($"a rent racing the dispose threw {error}");
                break;
            }
        }

        foreach ((IMemoryOwner<byte> owner, byte mark) in held)
        {
            survivors.Add((owner, mark));
        }
    }

    private static (IMemoryOwner<byte>, byte) Marked(IMemoryOwner<byte> owner, byte mark)
    {
        owner.Memory.Span.Fill(mark);
        return (owner, mark);
    }

    private static void Guard(ConcurrentQueue<string> wrong, string what, Action work)
    {
        try
        {
            work();
        }
        catch (Exception error)
        {
            wrong.Enqueue($"the racing {what} threw {error}");
        }
    }
}
