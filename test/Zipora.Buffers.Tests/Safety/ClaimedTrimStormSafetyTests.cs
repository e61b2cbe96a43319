using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's trim claims its depots' free blocks in place while rents take from above the claim, returns land on
/// top and new blocks grow the depots' arrays. Threads that come and go rent and return the very classes the trims
/// work on (thread caches on, and off so every rent and return meets the depot), each buffer filled whole with its
/// owner's id and checked whole before it is returned, while another thread trims over and over and moves the idle
/// clock (idle trims, slabs unmapped once their delay is over), and a cap forces trims from rents. No byte may be
/// found overwritten or zeroed (two owners, or a page dropped under a live block), and when all is back the figures
/// must be exact and a trim must free every slab.
/// </summary>
public sealed class ClaimedTrimStormSafetyTests
{
    private static readonly int[] s_sizes = [64, 100, 1000, 4096, 8000];

    [Theory]
    [InlineData(OwnerMode.Default, 128, false)]
    [InlineData(OwnerMode.ReuseOwners, 128, false)]
    [InlineData(OwnerMode.Default, 0, false)]
    [InlineData(OwnerMode.ReuseOwners, 0, false)]
    [InlineData(OwnerMode.Default, 4, true)]
    [InlineData(OwnerMode.ReuseOwners, 4, true)]
    public void RentsAndReturnsDuringClaimedTrimsNeverShareZeroOrLoseABlock(OwnerMode mode, int threadCacheMaxBuffers, bool capped)
    {
        var failures = new ConcurrentQueue<string>();
        long trims = 0;
        long rents = 0;
        long refused = 0;
        var watch = Stopwatch.StartNew();
        int rounds = 0;

        // Each round a fresh pool, so its depots' arrays grow again while trims claim them; on until enough trims met
        // enough rents, at most 4 s.
        while ((rounds < 8 || trims < 200 || rents < 50_000) && watch.Elapsed < TimeSpan.FromSeconds(4) && failures.IsEmpty)
        {
            var clock = new FakeTimeProvider();
            TieredMemoryPoolOptions options = SafetyCases.Options(mode, clock);
            options.ThreadCacheMaxBuffers = threadCacheMaxBuffers;
            options.MaxBytesInUse = capped ? 2L << 20 : 0;
            var pool = new TieredMemoryPool(options);
            string what = $"{mode}, thread caches of {threadCacheMaxBuffers}, capped {capped}, round {rounds}";
            (long roundTrims, long roundRents, long roundRefused) = Storm(pool, clock, failures, what);
            trims += roundTrims;
            rents += roundRents;
            refused += roundRefused;
            if (failures.IsEmpty)
            {
                AssertQuietAndWhole(pool, what);
            }

            pool.Dispose();
            rounds++;
        }

        Assert.True(failures.IsEmpty, string.Join("\n", failures));
        TestContext.Current.TestOutputHelper?.WriteLine($"{rounds} rounds, {trims} trims, {rents} rents ({refused} refused at the cap) in {watch.ElapsedMilliseconds} ms");
        Assert.True(trims >= 50 && rents >= 10_000, $"too little overlap: {trims} trims, {rents} rents");
    }

    [Theory]
    [InlineData(OwnerMode.Default)]
    [InlineData(OwnerMode.ReuseOwners)]
    public void APoolDisposedAmidClaimedTrimsLosesNoLiveContentsAndEndsWithNothingInUse(OwnerMode mode)
    {
        var failures = new ConcurrentQueue<string>();
        for (int round = 0; round < 6 && failures.IsEmpty; round++)
        {
            var clock = new FakeTimeProvider();
            TieredMemoryPoolOptions options = SafetyCases.Options(mode, clock);
            options.ThreadCacheMaxBuffers = round % 2 == 0 ? 0 : 128;
            var pool = new TieredMemoryPool(options);
            string what = $"{mode}, disposed amid the storm, round {round}";
            (long trims, long rents, _) = Storm(pool, clock, failures, what, disposeAfter: TimeSpan.FromMilliseconds(20 + (10 * round)));
            TestContext.Current.TestOutputHelper?.WriteLine($"{what}: {trims} trims, {rents} rents");
            SafetyCases.Advance(clock, SafetyCases.IdleDelay * 2);
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            Assert.True(statistics.Small.BuffersInUse == 0 && statistics.Medium.BuffersInUse == 0, $"{what}: in use after all returned\n{statistics}");
            Assert.True(SafetyCases.NegativeFigures(statistics) is null, $"{what}: {SafetyCases.NegativeFigures(statistics)}\n{statistics}");
        }

        Assert.True(failures.IsEmpty, string.Join("\n", failures));
    }

    /// <summary>Three generations of two worker threads each against a trimming thread; returns trims, rents and refusals.</summary>
    private static (long Trims, long Rents, long Refused) Storm(TieredMemoryPool pool, FakeTimeProvider clock, ConcurrentQueue<string> failures, string what, TimeSpan? disposeAfter = null)
    {
        bool staleDisposes = !what.StartsWith(nameof(OwnerMode.ReuseOwners), StringComparison.Ordinal);
        Timer? disposer = disposeAfter is TimeSpan after ? new Timer(_ => pool.Dispose(), null, after, Timeout.InfiniteTimeSpan) : null;
        long rents = 0;
        long refused = 0;
        long trims = 0;
        bool stop = false;
        var trimmer = new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    try
                    {
                        pool.Trim();
                    }
                    catch (ObjectDisposedException) when (disposer is not null)
                    {
                        // The pool was disposed under the trims, as this storm means it to be.
                    }

                    if (Interlocked.Increment(ref trims) % 4 == 0)
                    {
                        // An idle tick: classes idle for the delay are trimmed, slabs let go of are unmapped after it.
                        clock.Advance(SafetyCases.IdleDelay / 4);
                    }
                }
            }
            catch (Exception error)
            {
                failures.Enqueue($"{what}: the trim threw {error}");
            }
        });
        trimmer.Start();
        long nextId = 0;
        for (int generation = 0; generation < 3; generation++)
        {
            var workers = new List<Thread>();
            for (int w = 0; w < 2; w++)
            {
                int seed = (generation * 7) + w;
                var worker = new Thread(() => Work(pool, new Random(seed), staleDisposes, ref nextId, ref rents, ref refused, failures, what));
                workers.Add(worker);
                worker.Start();
            }

            // A worker's thread ends with its generation: its cache is retired while the trims go on.
            workers.ForEach(static worker => worker.Join());
        }

        Volatile.Write(ref stop, true);
        trimmer.Join();
        disposer?.Dispose();
        return (trims, rents, refused);
    }

    /// <summary>Rents and returns at random, holding up to a few hundred buffers, each filled with its owner's id.</summary>
    private static void Work(TieredMemoryPool pool, Random random, bool staleDisposes, ref long nextId, ref long rents, ref long refused, ConcurrentQueue<string> failures, string what)
    {
        var held = new List<(IMemoryOwner<byte> Owner, long Id)>();
        var disposed = new List<IMemoryOwner<byte>>();
        int most = random.Next(50, 400);
        try
        {
            for (int op = 0; op < 6000 && failures.IsEmpty; op++)
            {
                if (held.Count < most && (held.Count == 0 || random.Next(100) < 55))
                {
                    IMemoryOwner<byte> owner;
                    try
                    {
                        owner = pool.Rent(s_sizes[random.Next(s_sizes.Length)]);
                    }
                    catch (ObjectDisposedException)
                    {
                        // The pool was disposed under this storm: what is held is still checked and returned below.
                        break;
                    }
                    catch (InsufficientMemoryException)
                    {
                        // At the cap with what this storm holds: the rent is refused, nothing was handed out.
                        Interlocked.Increment(ref refused);
                        ReturnOne(held, disposed, random, failures, what);
                        continue;
                    }

                    long id = Interlocked.Increment(ref nextId);
                    Fill(owner.Memory.Span, id);
                    held.Add((owner, id));
                    Interlocked.Increment(ref rents);
                }
                else
                {
                    ReturnOne(held, disposed, random, failures, what);
                }

                if (staleDisposes && disposed.Count > 0 && random.Next(100) < 10)
                {
                    // A caller's bug: a second dispose of an owner, now or long after, which the pool ignores.
                    int stale = random.Next(disposed.Count);
                    disposed[stale].Dispose();
                    disposed[stale] = disposed[^1];
                    disposed.RemoveAt(disposed.Count - 1);
                }
            }
        }
        catch (Exception error)
        {
            failures.Enqueue($"{what}: a worker threw {error}");
        }

        while (held.Count > 0)
        {
            ReturnOne(held, disposed, random, failures, what);
        }
    }

    private static void ReturnOne(List<(IMemoryOwner<byte> Owner, long Id)> held, List<IMemoryOwner<byte>> disposed, Random random, ConcurrentQueue<string> failures, string what)
    {
        if (held.Count == 0)
        {
            return;
        }

        int index = random.Next(held.Count);
        (IMemoryOwner<byte> owner, long id) = held[index];
        held[index] = held[^1];
        held.RemoveAt(held.Count - 1);
        string? wrong = Check(owner.Memory.Span, id);
        if (wrong is not null)
        {
            failures.Enqueue($"{what}: owner {id} ({owner.Memory.Length} bytes at {SafetyCases.RangeOf(owner)}) {wrong}");
        }

        owner.Dispose();
        if (disposed.Count < 1000)
        {
            disposed.Add(owner);
        }
    }

    private static void Fill(Span<byte> span, long id)
    {
        Span<long> words = MemoryMarshal.Cast<byte, long>(span);
        words.Fill(id);
        span[(words.Length * sizeof(long))..].Fill((byte)id);
    }

    private static string? Check(ReadOnlySpan<byte> span, long id)
    {
        ReadOnlySpan<long> words = MemoryMarshal.Cast<byte, long>(span);
        for (int i = 0; i < words.Length; i++)
        {
            if (words[i] != id)
            {
                return $"found {words[i]:x} at byte {i * sizeof(long)}: {(words[i] == 0 ? "a page dropped under it" : "another owner wrote into it")}";
            }
        }

        for (int i = words.Length * sizeof(long); i < span.Length; i++)
        {
            if (span[i] != (byte)id)
            {
                return $"found byte {span[i]:x} at {i}";
            }
        }

        return null;
    }

    /// <summary>With everything returned: nothing in use, no figure negative, the depots' room exact, every block back.</summary>
    private static void AssertQuietAndWhole(TieredMemoryPool pool, string what)
    {
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(SafetyCases.NegativeFigures(statistics) is null, $"{what}: {SafetyCases.NegativeFigures(statistics)}\n{statistics}");
        Assert.True(statistics.Small.BuffersInUse == 0 && statistics.Medium.BuffersInUse == 0, $"{what}: in use with all returned\n{statistics}");
        DepotReservation.AssertMatches(pool, expectedExisting: null, what);

        // Every block is rentable once: all of them at once, disjoint (a block listed twice would be handed out twice).
        var owners = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizes)
        {
            int held = DepotReservation.HeldIn(pool, size < 1024 ? "_small" : "_medium", size);
            owners.AddRange(DepotReservation.Rent(pool, size, held));
        }

        SafetyCases.AssertDisjoint(owners, what);
        owners.ForEach(static owner => owner.Dispose());
        DepotReservation.AssertATrimFreesEverySlabAndItsRoom(pool, what);
    }
}
