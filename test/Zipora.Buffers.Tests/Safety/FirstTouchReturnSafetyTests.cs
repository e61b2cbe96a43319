using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A buffer returned on a thread that never used its tier (a Pipe's reader, a continuation on a fresh pool thread)
/// touches the tier's thread-statics for the first time on that thread, and the runtime allocates them then (224 bytes
/// measured for one reference). At the GC heap limit that allocation throws: the owner has already marked the block
/// returned, so a return that let it out lost the block for good. Such a return keeps the block (in its class's depot,
/// or the region tier's shared cache) and throws nothing.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FirstTouchReturnSafetyTests
{
    private const int RoundsPerCase = 4;

    [Fact]
    public void AReturnThatIsItsThreadsFirstTouchOfTheTierAtTheHeapLimitKeepsTheBlock()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FirstTouchReturnSafetyTests), nameof(AReturnThatIsItsThreadsFirstTouchOfTheTierAtTheHeapLimitKeepsTheBlock)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var failures = new List<string>();
        var filler = new List<byte[]>(400_000);
        int thrown = 0;
        int rounds = 0;
        foreach (bool reuseOwners in new[] { false, true })
        {
            foreach (int size in new[] { 64, 4096, 100_000, 3 << 20 })
            {
                var time = new FakeTimeProvider();

                // No hugepages: a refused hugepage mapping counts as an mmap call, with nothing to unmap.
                var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
                string what = $"{size} bytes, ReuseOwners {reuseOwners}";

                // The path compiled on another fresh thread first, with room, so only the heap limit differs.
                HeapFiller.ThrownOnAFreshThread(withRoom: null, pool.Rent(size).Dispose, filler: null);
                for (int round = 0; round < RoundsPerCase; round++, rounds++)
                {
                    Exception? error = HeapFiller.ThrownOnAFreshThread(withRoom: null, pool.Rent(size).Dispose, filler);
                    filler.Clear();
                    GC.Collect();
                    if (error is not null)
                    {
                        thrown++;
                        failures.Add($"{what}, round {round}: the return threw {error.GetType().Name} at {error.StackTrace?.Split('\n')[0].Trim()}");
                    }
                }

                // Every block came back once: none counted in use, and what is rented now is disjoint.
                TieredMemoryPoolStatistics statistics = pool.GetStatistics();
                if (statistics.BytesInUse != 0)
                {
                    failures.Add($"{what}: {statistics.BytesInUse} bytes counted in use with every owner disposed: a return lost its block");
                }

                List<IMemoryOwner<byte>> owners = DepotReservation.Rent(pool, size, RoundsPerCase + 2);
                SafetyCases.AssertDisjoint(owners, what);
                owners.ForEach(static owner => owner.Dispose());

                pool.Dispose();
                for (int tick = 0; tick < 4; tick++)
                {
                    SafetyCases.Advance(time, SafetyCases.IdleDelay);
                }

                statistics = pool.GetStatistics();
                if (statistics.MmapCalls != statistics.MunmapCalls)
                {
                    failures.Add($"{what}: {statistics.MmapCalls} mappings made and {statistics.MunmapCalls} unmapped, four delays after the pool was disposed with nothing rented");
                }
            }
        }

        // Whatever else ran out of memory meanwhile (the pools' timers) was this test's doing.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        TestContext.Current.TestOutputHelper?.WriteLine($"{rounds} returns at the heap limit, {thrown} threw");
        Assert.True(failures.Count == 0, $"{rounds} returns at the heap limit, {thrown} threw:\n{string.Join('\n', failures)}");
    }
}
