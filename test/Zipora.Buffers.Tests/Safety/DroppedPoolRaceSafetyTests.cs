using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The attack on a dropped pool's finalizer: threads keep renting from and returning to one of its tiers with per-thread
/// caches (the slab tiers' stacks, the region tiers' slots), while the collector finds the pool and its finalizer's
/// work disposes the tier under them.
/// </summary>
/// <remarks>
/// The threads hold the tier (as a rented block does), not the pool, so nothing stops the pool being collected mid-rent.
/// Each thread writes its own mark over every block it holds and checks it is intact before returning it: a block
/// given to two owners shows as a foreign mark. Forces full collections, so it runs alone.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class DroppedPoolRaceSafetyTests
{
    private const int Threads = 4;
    private const int HeldPerThread = 24;
    private const int MaxRentsPerThread = 2_000_000;

    [Theory]
    [InlineData("_small")]
    [InlineData("_medium")]
    [InlineData("_large")]
    [InlineData("_huge")]
    public void RentersOfATierWhosePoolIsFinalizedNeverShareABlockNorTouchUnmappedMemory(string tierField)
    {
        var time = new FakeTimeProvider();
        for (int round = 0; round < 3; round++)
        {
            Func<int, NativeMemoryManager> tier = CreateAndDropKeepingTheTier(time, tierField);
            var failures = new ConcurrentQueue<string>();
            int stoppedByDisposal = 0;
            using var start = new Barrier(Threads + 1);
            var workers = new Thread[Threads];
            for (int t = 0; t < Threads; t++)
            {
                byte mark = (byte)(t + 1);
                workers[t] = new Thread(() =>
                {
                    if (RentUntilDisposed(tier, mark, start, failures))
                    {
                        Interlocked.Increment(ref stoppedByDisposal);
                    }
                });
                workers[t].Start();
            }

            start.SignalAndWait();
            for (int collections = 0; collections < 50 && Volatile.Read(ref stoppedByDisposal) < Threads; collections++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Thread.Sleep(10);
            }

            foreach (Thread worker in workers)
            {
                worker.Join();
            }

            Assert.Empty(failures);
            Assert.Equal(Threads, stoppedByDisposal);
        }
    }

    /// <summary>
    /// Rents and returns blocks of five sizes, holding up to <see cref="HeldPerThread"/> marked ones, until the tier refuses a
    /// rent because it was disposed (returns <see langword="true"/>) or the rents run out; then returns what it holds.
    /// </summary>
    private static bool RentUntilDisposed(Func<int, NativeMemoryManager> rent, byte mark, Barrier start, ConcurrentQueue<string> failures)
    {
        var held = new Queue<NativeMemoryManager>();
        bool disposed = false;
        start.SignalAndWait();
        for (int i = 0; i < MaxRentsPerThread && !disposed; i++)
        {
            try
            {
                NativeMemoryManager block = rent(i % 5);
                if (!ProcessMappings.IsMappedNow(block.Address, block.Length))
                {
                    failures.Enqueue($"a block handed out at 0x{block.Address:x} is not mapped");
                    return false;
                }

                block.GetSpan().Fill(mark);
                held.Enqueue(block);
            }
            catch (ObjectDisposedException)
            {
                disposed = true;
            }

            if (held.Count > HeldPerThread || (disposed && held.Count > 0))
            {
                while (held.Count > (disposed ? 0 : HeldPerThread / 2))
                {
                    ReturnChecked(held.Dequeue(), mark, failures);
                }
            }
        }

        return disposed;
    }

    private static void ReturnChecked(NativeMemoryManager block, byte mark, ConcurrentQueue<string> failures)
    {
        if (!ProcessMappings.IsMappedNow(block.Address, block.Length))
        {
            failures.Enqueue($"a held block at 0x{block.Address:x} was unmapped");
            return;
        }

        int foreign = block.GetSpan().IndexOfAnyExcept(mark);
        if (foreign >= 0)
        {
            failures.Enqueue($"the block at 0x{block.Address:x} held by owner {mark} was written by owner {block.GetSpan()[foreign]}: two owners shared it");
        }

        block.Dispose();
    }

    /// <summary>Builds and drops a pool, keeping only a way to rent from one of its tiers (size 0 to 4 picks one of five sizes).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Func<int, NativeMemoryManager> CreateAndDropKeepingTheTier(FakeTimeProvider time, string tierField)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        FieldInfo field = typeof(TieredMemoryPool).GetField(tierField, BindingFlags.NonPublic | BindingFlags.Instance)
            ?? throw new InvalidOperationException($"the pool has no field {tierField}");
        return field.GetValue(pool) switch
        {
            SmallTier small => sizeIndex => small.Rent(48 << sizeIndex),
            MediumTier medium => sizeIndex => medium.Rent(1024 << sizeIndex),
            LargeTier large => sizeIndex => large.Rent(20_000 << sizeIndex),
            HugeTier huge => sizeIndex => huge.Rent((3 << 20) + (sizeIndex << 20)),
            _ => throw new InvalidOperationException($"{tierField} is not a tier with per-thread caches"),
        };
    }
}
