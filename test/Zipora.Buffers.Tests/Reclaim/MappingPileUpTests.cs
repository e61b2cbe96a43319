using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Memory a trim lets go of within its idle delay keeps its mapping for that delay (a stale <c>Span</c> must not
/// fault), with its pages dropped. A pool held at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> trims at every
/// refusal, and a pool trimmed in a loop at every trim: before, each later rent mapped anew while the let-go mappings
/// waited, and the process's mappings piled up (114,000 in 8 s at a 32 MB cap, 34,000 entries in
/// <c>/proc/self/maps</c>, until the OS refused mappings at <c>vm.max_map_count</c>, where the runtime's own next one
/// ends the process). A new mapping of a waiting one's length now takes it. Measured from outside the pool: the
/// process's writable mapped bytes and its map entries.
/// </summary>
// Measured in the process's mappings: alone, so no other test's pool maps meanwhile.
[Collection(nameof(HugepageTests))]
public sealed class MappingPileUpTests
{
    private const int Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_run = TimeSpan.FromSeconds(1.5);
    private static readonly int[] s_sizes = [16, 700, 3000, 12_000, 40_000, 200_000, 900_000, 3 * Megabyte, 5 * Megabyte];

    [Fact]
    public void APoolHeldAtItsCapReusesTheMappingsItLetGoOfInsteadOfPilingUpNewOnes()
    {
        Skip.Unless(ProcessMappings.CanRead, "needs /proc/self/maps");
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBytesInUse = 32 * Megabyte });

        (long grownBytes, int grownEntries, long rents) = RunMeasured(pool, () => Traffic(pool, seed: 1), () => Traffic(pool, seed: 2));

        AssertNoPileUp(pool, grownBytes, grownEntries, rents);
    }

    [Fact]
    public void APoolTrimmedInALoopReusesTheMappingsItLetGoOfInsteadOfPilingUpNewOnes()
    {
        Skip.Unless(ProcessMappings.CanRead, "needs /proc/self/maps");
        using var pool = new TieredMemoryPool();

        (long grownBytes, int grownEntries, long rents) = RunMeasured(pool, () => Traffic(pool, seed: 3), () => TrimLoop(pool));

        AssertNoPileUp(pool, grownBytes, grownEntries, rents);
    }

    private static void AssertNoPileUp(TieredMemoryPool pool, long grownBytes, int grownEntries, long rents)
    {
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        string figures = $"{rents} rents, {statistics.MmapCalls} mmap calls, {statistics.MappingsReused} mappings reused, " +
            $"{statistics.BytesAwaitingRelease / Megabyte} MB awaiting unmap; the process grew by {grownBytes / Megabyte} MB writable and {grownEntries} map entries";

        // Bounded by what the traffic holds at once and what a trim lets go of, not by the time it runs: before, gigabytes
        // and thousands of entries a second.
        Assert.True(grownBytes < 512L * Megabyte, figures);
        Assert.True(grownEntries < 1_000, figures);
        Assert.True(statistics.MappingsReused > 0, figures);
        Assert.True(statistics.BytesAwaitingRelease < 512L * Megabyte, figures);
    }

    /// <summary>Runs both for <see cref="s_run"/>; the process's growth in writable bytes and map entries, and the rents made.</summary>
    private static (long GrownBytes, int GrownEntries, long Rents) RunMeasured(TieredMemoryPool pool, Func<long> first, Func<long> second)
    {
        long bytesBefore = ProcessMappings.WritableBytes();
        int entriesBefore = ProcessMappings.Count();
        long rents = 0;
        Exception? failure = null;
        var threads = new List<Thread>();
        foreach (Func<long> work in new[] { first, second })
        {
            var thread = new Thread(() =>
            {
                try
                {
                    Interlocked.Add(ref rents, work());
                }
                catch (Exception exception)
                {
                    failure = exception;
                }
            });
            thread.Start();
            threads.Add(thread);
        }

        threads.ForEach(thread => thread.Join());
        Assert.Null(failure);
        long grownBytes = ProcessMappings.WritableBytes() - bytesBefore;
        int grownEntries = ProcessMappings.Count() - entriesBefore;
        pool.Trim();
        return (grownBytes, grownEntries, rents);
    }

    /// <summary>Rents of every tier, a few held at once, each stamped at both ends and checked at its return; refusals at the cap are expected.</summary>
    private static long Traffic(TieredMemoryPool pool, int seed)
    {
        var random = new Random(seed);
        var held = new Queue<(IMemoryOwner<byte> Owner, byte Stamp)>();
        long rents = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < s_run)
        {
            if (held.Count == 4)
            {
                (IMemoryOwner<byte> owner, byte stamp) = held.Dequeue();
                Span<byte> span = owner.Memory.Span;
                Assert.True(span[0] == stamp && span[^1] == stamp, "a held buffer was written by another owner");
                owner.Dispose();
            }

            try
            {
                IMemoryOwner<byte> rented = pool.Rent(s_sizes[random.Next(s_sizes.Length)]);
                rents++;
                byte stamp = (byte)random.Next(1, 256);
                Span<byte> span = rented.Memory.Span;
                span[0] = stamp;
                span[^1] = stamp;
                held.Enqueue((rented, stamp));
            }
            catch (InsufficientMemoryException)
            {
                // At the cap: the pool stays usable, and the next rent tries again.
            }
        }

        while (held.TryDequeue(out (IMemoryOwner<byte> Owner, byte Stamp) entry))
        {
            entry.Owner.Dispose();
        }

        return rents;
    }

    private static long TrimLoop(TieredMemoryPool pool)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < s_run)
        {
            pool.Trim();
            Thread.Sleep(1);
        }

        return 0;
    }
}
