using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool is disposed where managed memory runs short: a component shut down in a container at its GC heap limit. A
/// dispose that runs out of managed memory partway leaves the pool so that the caller's retry, or the pool's own timer
/// when nobody retries, finishes it: every mapping is unmapped once the delay has passed, nothing stays counted in
/// use, and no block is handed to two owners meanwhile.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FailedDisposeSafetyTests
{
    // From a heap with no room at all to one where the whole dispose fits: here it fitted from 42-46 KB, and in a CI run
    // 48 KB was still short, so past this the sweep goes on until a dispose finishes, up to LastHeadroom.
    private const int MostHeadroom = 48 * 1024;
    private const int LastHeadroom = 192 * 1024;
    private const int HeadroomStep = 512;
    private const int RegionSize = 100_000;
    private const int HugeSize = 3 << 20;

    [Fact]
    public void ADisposeThatRunsOutOfManagedMemoryPartwayIsFinishedByTheCallersRetry()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FailedDisposeSafetyTests), nameof(ADisposeThatRunsOutOfManagedMemoryPartwayIsFinishedByTheCallersRetry)))
        {
            return;
        }

        SweepAndCheck(retry: true);
    }

    [Fact]
    public void ADisposeThatRunsOutOfManagedMemoryPartwayIsFinishedByThePoolsTimer()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FailedDisposeSafetyTests), nameof(ADisposeThatRunsOutOfManagedMemoryPartwayIsFinishedByThePoolsTimer)))
        {
            return;
        }

        SweepAndCheck(retry: false);
    }

    private static void SweepAndCheck(bool retry)
    {
        long backgroundFailures = BackgroundFailures.Count;
        Sweep sweep = SweepTheHeadroom(retry);

        // Whatever else ran out of memory meanwhile (the pools' ticks, which also finish a dispose nobody retried) was
        // this test's doing.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        string what = $"retry {retry}, {sweep.Rounds} rounds, {sweep.DisposesFailed} disposes out of memory, {sweep.RentsBetween} rents served between a failed dispose and its end";
        TestContext.Current.TestOutputHelper?.WriteLine($"{what}; thrown from:\n{string.Join('\n', sweep.ThrownFrom)}");
        Assert.True(sweep.Unexpected is null, $"{what}: {sweep.Unexpected}");
        Assert.True(sweep.Failures.Count == 0, $"{what}:\n{string.Join('\n', sweep.Failures)}");
        Assert.True(sweep.DisposesFailed > 0 && sweep.DisposesFailed < sweep.Rounds, $"{what}: the sweep did not cross from failing disposes to finished ones");
    }

    /// <summary>
    /// On a thread of its own, which fills the heap (so its own allocation context is spent too): rounds of a pool with
    /// blocks cached and rented in every tier, disposed with a little more of the heap free than the round before.
    /// </summary>
    private static Sweep SweepTheHeadroom(bool retry)
    {
        var sweep = new Sweep();
        var filler = new List<byte[]>(400_000);
        var worker = new Thread(() =>
        {
            try
            {
                // Every path compiled and every lazy object made while there is room.
                RunRound(sweep, filler, retry, headroom: int.MaxValue);

                // The two tests take every other step each: together every step, which a dispose fails at the same
                // place in whichever way it is finished afterwards, in half the time (each round fills the heap anew).
                for (int headroom = retry ? 0 : HeadroomStep;
                    headroom <= MostHeadroom || (headroom <= LastHeadroom && sweep.DisposesFailed == sweep.Rounds);
                    headroom += 2 * HeadroomStep)
                {
                    RunRound(sweep, filler, retry, headroom);
                }
            }
            catch (Exception error)
            {
                sweep.Unexpected = error;
            }
        });
        worker.Start();
        worker.Join();
        return sweep;
    }

    private static void RunRound(Sweep sweep, List<byte[]> filler, bool retry, int headroom)
    {
        bool counted = headroom != int.MaxValue;
        var time = new FakeTimeProvider();
        bool reuseOwners = (sweep.Rounds % 2) == 1;

        // No hugepages: a refused hugepage mapping counts as an mmap call, with nothing to unmap.
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = reuseOwners, TimeProvider = time, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
        List<IMemoryOwner<byte>> held = FillTheCaches(pool);

        OutOfMemoryException? thrown = null;
        if (counted)
        {
            HeapFiller.FillLeaving(filler, headroom);
        }

        try
        {
            pool.Dispose();
        }
        catch (OutOfMemoryException error)
        {
            thrown = error;
        }

        // Let go of in place: a method this long runs unoptimized for a while, where a local stays alive to its end.
        filler.Clear();
        GC.Collect();
        bool failed = thrown is not null;
        if (thrown is not null)
        {
            sweep.Note(thrown);
        }

        // Whatever a half-disposed pool still hands out is nobody else's.
        List<IMemoryOwner<byte>> between = failed ? RentWhatIsServed(pool) : [];
        sweep.RentsBetween += between.Count;
        var everyone = new List<IMemoryOwner<byte>>(held);
        everyone.AddRange(between);
        string what = $"round {sweep.Rounds} (headroom {headroom}, ReuseOwners {reuseOwners}, dispose {(failed ? "failed" : "finished")})";
        SafetyCases.AssertDisjoint(everyone, what);

        if (failed && retry)
        {
            pool.Dispose();
        }

        // Returned to the disposed pool, the blocks go with their slabs and regions.
        everyone.ForEach(static owner => owner.Dispose());
        for (int tick = 0; tick < 4; tick++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        if (statistics.MmapCalls != statistics.MunmapCalls || statistics.BytesInUse != 0 || statistics.BytesAwaitingRelease != 0)
        {
            sweep.Failures.Add($"{what}: {statistics.MmapCalls} mappings made and {statistics.MunmapCalls} unmapped, {statistics.BytesInUse} bytes in use and {statistics.BytesAwaitingRelease} awaiting release, four delays after the pool was disposed and every block returned");
        }

        if (counted)
        {
            sweep.Rounds++;
            sweep.DisposesFailed += failed ? 1 : 0;
        }
    }

    /// <summary>Rents and returns bursts in every tier, and keeps one block of each tier rented across the dispose.</summary>
    private static List<IMemoryOwner<byte>> FillTheCaches(TieredMemoryPool pool)
    {
        List<IMemoryOwner<byte>> held = [pool.Rent(64), pool.Rent(4096), pool.Rent(RegionSize), pool.Rent(HugeSize)];
        foreach ((int size, int count) in new[] { (64, 600), (4096, 300), (16384, 60), (RegionSize, 3), (HugeSize, 2) })
        {
            DepotReservation.Rent(pool, size, count).ForEach(static owner => owner.Dispose());
        }

        return held;
    }

    /// <summary>One rent of each tier's size, where the tier still serves it.</summary>
    private static List<IMemoryOwner<byte>> RentWhatIsServed(TieredMemoryPool pool)
    {
        var rented = new List<IMemoryOwner<byte>>();
        foreach (int size in new[] { 64, 4096, RegionSize, HugeSize })
        {
            try
            {
                rented.Add(pool.Rent(size));
            }
            catch (ObjectDisposedException)
            {
                // The tier is disposed: what a disposed pool does.
            }
        }

        return rented;
    }

    private sealed class Sweep
    {
        public int Rounds;
        public int DisposesFailed;
        public int RentsBetween;
        public List<string> Failures { get; } = [];
        public Exception? Unexpected;

        /// <summary>Where the disposes ran out of memory, and how often: each place is a frame that allocated.</summary>
        public Dictionary<string, int> ThrownFrom { get; } = [];

        public void Note(OutOfMemoryException error)
        {
            // The frame that threw and the pool's frame that called it: a List's growth alone does not say which list.
            string[] frames = error.StackTrace?.Split('\n') ?? [];
            string thrower = frames.Length > 0 ? frames[0].Trim() : "?";
            string pools = Array.Find(frames, static frame => frame.Contains("Zipora.Buffers.", StringComparison.Ordinal) && !frame.Contains(".Tests.", StringComparison.Ordinal))?.Trim() ?? "?";
            string where = $"{thrower} <- {pools}";
            ThrownFrom[where] = ThrownFrom.GetValueOrDefault(where) + 1;
        }
    }
}
