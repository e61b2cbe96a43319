using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// At <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>, with the pool's room all held by idle slabs, renters of
/// classes that have no slab yet must each be served: the trim a refused mapping makes lets the idle slabs go, and the
/// renters' fresh slabs, each listed with its renter's block, are never let go of by another renter's trim.
/// </summary>
public sealed class FreshClassesAtTheCapSafetyTests
{
    private const int SlabBytes = 64 * 1024;
    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(2);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void RentersOfFreshClassesAreServedWhileIdleSlabsFillTheCap(int renters)
    {
        // Each renter's class on a 64 KB medium slab of its own: 1, 2 and 4 KB. The idle slabs are the small tier's (512 B
        // blocks, on 64 KB slabs too).
        int[] sizes = [1024, 2048, 4096];
        var clock = Stopwatch.StartNew();
        int rounds = 0;
        while (clock.Elapsed < s_budget || rounds < 20)
        {
            rounds++;
            var time = new FakeTimeProvider();
            TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
            options.MaxBytesInUse = (long)renters * SlabBytes;
            using var pool = new TieredMemoryPool(options);

            // The whole cap in idle slabs of the small tier.
            FillWithIdle(pool, 512, options.MaxBytesInUse);
            long idleBefore = pool.GetStatistics().BytesInUse;

            using var start = new Barrier(renters);
            var refused = new InsufficientMemoryException?[renters];
            var held = new IMemoryOwner<byte>?[renters];
            foreach (Thread thread in StartRenters(pool, sizes[..renters], start, held, refused, disposedMeanwhile: false))
            {
                thread.Join();
            }

            TieredMemoryPoolStatistics after = pool.GetStatistics();
            foreach (IMemoryOwner<byte>? owner in held)
            {
                owner?.Dispose();
            }

            for (int renter = 0; renter < renters; renter++)
            {
                Assert.True(
                    refused[renter] is null,
                    $"round {rounds}: {renters} renters of fresh classes ({string.Join(", ", sizes[..renters])} B) at a cap of {options.MaxBytesInUse} bytes held all by idle slabs ({idleBefore} B in use before): the rent of {sizes[renter]} B was refused ({refused[renter]?.Message})\n{after}");
            }
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void RentersOfOneFreshClassAreServedFromTheOneSlabTheCapLeavesRoomFor(int renters)
    {
        // 4 KB blocks, 16 to a 64 KB slab: one slab serves every renter, and the cap has room for just that one.
        const int size = 4096;
        var clock = Stopwatch.StartNew();
        int rounds = 0;
        int refusals = 0;
        string? firstRefusal = null;
        while (clock.Elapsed < s_budget || rounds < 20)
        {
            rounds++;
            var time = new FakeTimeProvider();
            TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.Default, time);
            options.MaxBytesInUse = SlabBytes;
            using var pool = new TieredMemoryPool(options);
            FillWithIdle(pool, 512, options.MaxBytesInUse);

            using var start = new Barrier(renters);
            var refused = new InsufficientMemoryException?[renters];
            var held = new IMemoryOwner<byte>?[renters];
            foreach (Thread thread in StartRenters(pool, [.. Enumerable.Repeat(size, renters)], start, held, refused, disposedMeanwhile: false))
            {
                thread.Join();
            }

            TieredMemoryPoolStatistics after = pool.GetStatistics();
            foreach (IMemoryOwner<byte>? owner in held)
            {
                owner?.Dispose();
            }

            foreach (InsufficientMemoryException? error in refused)
            {
                if (error is not null)
                {
                    refusals++;
                    firstRefusal ??= $"round {rounds}: {error.Message}; {after.Medium.BytesInUse} B of 4 KB blocks in use, {after.Medium.BytesUncarved} B uncarved\n{after}";
                }
            }
        }

        Assert.True(
            refusals == 0,
            $"{refusals} of {rounds * renters} rents of {size} B by {renters} racing threads at a cap of one {SlabBytes}-byte slab (the cap all idle small slabs before) were refused, while the one slab the cap left room for had room for all of them. First: {firstRefusal}");
    }

    [Fact]
    public void RentersOfOneFreshClassAtTheCapAreNeitherStuckNorLeftCountedWhenThePoolIsDisposedUnderThem()
    {
        // A renter refused at the cap waits for the class's other mappings under way: the pool's dispose ends each of
        // them (given back), so none waits for good, and what they took comes back.
        const int renters = 4;
        var clock = Stopwatch.StartNew();
        int rounds = 0;
        while (clock.Elapsed < s_budget || rounds < 20)
        {
            rounds++;
            var time = new FakeTimeProvider();
            var allocator = new LiveMappingsAllocator(mostLive: 64);
            TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, time);
            options.MaxBytesInUse = SlabBytes;
            var pool = new TieredMemoryPool(options);
            FillWithIdle(pool, 512, options.MaxBytesInUse);

            using var start = new Barrier(renters + 1);
            var held = new IMemoryOwner<byte>?[renters];
            var refused = new InsufficientMemoryException?[renters];
            Thread[] threads = StartRenters(pool, [.. Enumerable.Repeat(4096, renters)], start, held, refused, disposedMeanwhile: true);
            start.SignalAndWait();
            Thread.SpinWait(Random.Shared.Next(0, 5_000));
            pool.Dispose();
            foreach (Thread thread in threads)
            {
                Assert.True(thread.Join(TimeSpan.FromSeconds(10)), $"round {rounds}: a renter of 4 KB at a cap of one slab still renting 10 s after the pool was disposed under it");
            }

            foreach (IMemoryOwner<byte>? owner in held)
            {
                owner?.Dispose();
            }

            SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
            allocator.AssertNoneLive($"round {rounds}: every block back to the pool disposed under {renters} renters at its cap, three delays on");
        }
    }

    /// <summary>
    /// Starts a thread per renter, each renting its size once <paramref name="start"/> lets it: what it got goes in
    /// <paramref name="held"/>, a refusal at the cap in <paramref name="refused"/>; a pool disposed meanwhile (only where
    /// <paramref name="disposedMeanwhile"/>) gave the renter nothing.
    /// </summary>
    private static Thread[] StartRenters(TieredMemoryPool pool, int[] sizes, Barrier start, IMemoryOwner<byte>?[] held, InsufficientMemoryException?[] refused, bool disposedMeanwhile)
    {
        var threads = new Thread[sizes.Length];
        for (int t = 0; t < sizes.Length; t++)
        {
            int renter = t;
            threads[renter] = new Thread(() =>
            {
                start.SignalAndWait();
                try
                {
                    held[renter] = pool.Rent(sizes[renter]);
                }
                catch (ObjectDisposedException) when (disposedMeanwhile)
                {
                    // Disposed under this renter: it took nothing.
                }
                catch (InsufficientMemoryException error)
                {
                    refused[renter] = error;
                }
            });
            threads[renter].Start();
        }

        return threads;
    }

    /// <summary>Rents blocks of <paramref name="size"/> until their slabs fill <paramref name="cap"/>, then returns them all: the pool's room all idle.</summary>
    private static void FillWithIdle(TieredMemoryPool pool, int size, long cap)
    {
        var owners = new List<IMemoryOwner<byte>>();
        try
        {
            while (true)
            {
                owners.Add(pool.Rent(size));
            }
        }
        catch (InsufficientMemoryException)
        {
            // The cap is reached: every byte of it is a slab of this class.
        }

        Assert.True(owners.Count * (long)size >= cap / 2, $"only {owners.Count} blocks of {size} B fit a cap of {cap} bytes");
        owners.ForEach(static owner => owner.Dispose());
    }
}
