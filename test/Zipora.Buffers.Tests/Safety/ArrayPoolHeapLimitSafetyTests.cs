using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="System.Buffers.ArrayPool{T}.Return"/> of a valid array never throws (the runtime's pool drops what it
/// cannot keep), and neither does <see cref="TieredArrayPool.Return"/> at the GC heap limit, where the thread's first
/// touch of the pool's thread-statics, its cache, a class's slots or a depot's larger array cannot be made: the array
/// is dropped and counted evicted. A rent there may throw, and counts nothing it did not hand out. Either way the
/// statistics add up: every byte allocated is in use, retained or evicted, and none is in use once all came back.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class ArrayPoolHeapLimitSafetyTests
{
    private const int RoundsPerCase = 3;

    // Enough returns on one thread for a new pool's depot to grow its array (16 slots at first) while the heap is full.
    private const int ArraysPastTheDepotsRoom = 40;

    // Rents at the limit that threw: the case reached the limit.
    private static int s_rentsRefused;

    private delegate Exception? Round(TieredArrayPool pool, int length, List<byte[]>? filler);

    [Fact]
    public void ReturnsAtTheHeapLimitNeverThrowAndTheStatisticsAddUp()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(ArrayPoolHeapLimitSafetyTests), nameof(ReturnsAtTheHeapLimitNeverThrowAndTheStatisticsAddUp)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var failures = new List<string>();
        var filler = new List<byte[]>(400_000);
        var cases = new (string Name, int StackArrays, Round Round)[]
        {
            ("a return that is its thread's first touch of the pool", 128, ReturnAsFirstTouch),
            ("a return on a thread that used another pool only", 128, ReturnAfterAnotherPool),
            ("a return of a class its thread never used", 128, ReturnOfANewClass),
            ("a rent that finds its thread's stack and the depot empty", 128, RentOnAnEmptyStack),
            ("returns past the depot's room, no stack behind slot 0", 1, ReturnsPastTheDepotsRoom),
            ("returns past the depot's room, a stack of four", 4, ReturnsPastTheDepotsRoom),
        };

        int rounds = 0;
        int returnsThrew = 0;
        foreach (int length in new[] { 64, 4096, 100_000 })
        {
            foreach ((string name, int stackArrays, Round round) in cases)
            {
                var options = new TieredArrayPoolOptions { ThreadCacheMaxArrays = stackArrays, IdleReleaseDelay = Timeout.InfiniteTimeSpan };
                string what = $"{name}, {length} bytes";

                // The path compiled on another fresh thread first, with room, so only the heap limit differs.
                Exception? warmUp = round(new TieredArrayPool(options), length, filler: null);
                Assert.True(warmUp is null, $"{what}: threw with room: {warmUp}");
                for (int i = 0; i < RoundsPerCase; i++, rounds++)
                {
                    // A pool per round: what a round finds (its depot's room above all) does not depend on the last.
                    var pool = new TieredArrayPool(options);
                    Exception? error = round(pool, length, filler);
                    filler.Clear();
                    GC.Collect();
                    if (error is not null)
                    {
                        returnsThrew++;
                        failures.Add($"{what}, round {i}: a return threw {error.GetType().Name} at {error.StackTrace?.Split('\n')[0].Trim()}");
                    }

                    CheckTheStatistics(pool, $"{what}, round {i}", failures);
                }
            }
        }

        // Whatever else ran out of memory meanwhile (the pressure watcher's trims) was this test's doing.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        TestContext.Current.TestOutputHelper?.WriteLine($"{rounds} rounds at the heap limit, {returnsThrew} threw from a return, {s_rentsRefused} rents refused");
        Assert.True(failures.Count == 0, $"{rounds} rounds at the heap limit, {returnsThrew} threw from a return:\n{string.Join('\n', failures)}");
    }

    /// <summary>Every array of the pool came back: none in use, the rents matched by returns, and every byte allocated is in use, retained or evicted.</summary>
    private static void CheckTheStatistics(TieredArrayPool pool, string what, List<string> failures)
    {
        TieredArrayPoolStatistics statistics = pool.GetStatistics();
        TierStatistics arrays = statistics.Arrays;
        if (statistics.BytesInUse != 0)
        {
            failures.Add($"{what}: {statistics.BytesInUse} bytes counted in use with every array returned");
        }

        if (arrays.BytesAllocated != arrays.BytesInUse + arrays.BytesRetained + arrays.BytesEvicted)
        {
            failures.Add($"{what}: {arrays.BytesAllocated} bytes allocated, but {arrays.BytesInUse} in use + {arrays.BytesRetained} retained + {arrays.BytesEvicted} evicted");
        }

        if (arrays.Rents != arrays.Returns)
        {
            failures.Add($"{what}: {arrays.Rents} rents counted and {arrays.Returns} returns, with every array rented returned once");
        }
    }

    /// <summary>An array rented on the test's thread, returned on a thread that never touched any array pool.</summary>
    private static Exception? ReturnAsFirstTouch(TieredArrayPool pool, int length, List<byte[]>? filler)
    {
        byte[] array = pool.Rent(length);
        return HeapFiller.ThrownOnAFreshThread(withRoom: null, atTheLimit: () => pool.Return(array), filler);
    }

    /// <summary>
    /// As <see cref="ReturnAsFirstTouch"/>, on a thread that rented from another pool first: the thread-statics are
    /// made, the pool's cache is not.
    /// </summary>
    private static Exception? ReturnAfterAnotherPool(TieredArrayPool pool, int length, List<byte[]>? filler)
    {
        var other = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        byte[] array = pool.Rent(length);
        return HeapFiller.ThrownOnAFreshThread(withRoom: () => other.Return(other.Rent(length)), atTheLimit: () => pool.Return(array), filler);
    }

    /// <summary>A return on a thread whose cache of the pool has no slots for the array's class yet.</summary>
    private static Exception? ReturnOfANewClass(TieredArrayPool pool, int length, List<byte[]>? filler)
    {
        byte[] array = pool.Rent(length);
        return HeapFiller.ThrownOnAFreshThread(withRoom: () => pool.Return(pool.Rent(length * 2)), atTheLimit: () => pool.Return(array), filler);
    }

    /// <summary>
    /// A thread holds the one array of its class it rented, and rents another at the limit: nothing to pop, nothing in
    /// the depot, so it allocates, which may throw. Whatever it got goes back once there is room.
    /// </summary>
    private static Exception? RentOnAnEmptyStack(TieredArrayPool pool, int length, List<byte[]>? filler)
    {
        byte[]? held = null;
        byte[]? rentedAtTheLimit = null;
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            withRoom: () => held = pool.Rent(length),
            atTheLimit: () =>
            {
                try
                {
                    rentedAtTheLimit = pool.Rent(length);
                }
                catch (OutOfMemoryException)
                {
                    // Allowed: a rent may fail for want of memory, as long as it counts nothing.
                    s_rentsRefused++;
                }
            },
            filler);
        filler?.Clear();
        pool.Return(held!);
        if (rentedAtTheLimit is not null)
        {
            pool.Return(rentedAtTheLimit);
        }

        return thrown;
    }

    /// <summary>A thread returns at the limit the arrays it rented with room, more than a new pool's depot has room for (16).</summary>
    private static Exception? ReturnsPastTheDepotsRoom(TieredArrayPool pool, int length, List<byte[]>? filler)
    {
        var arrays = new byte[ArraysPastTheDepotsRoom][];
        return HeapFiller.ThrownOnAFreshThread(
            withRoom: () =>
            {
                for (int i = 0; i < arrays.Length; i++)
                {
                    arrays[i] = pool.Rent(length);
                }
            },
            atTheLimit: () =>
            {
                foreach (byte[] array in arrays)
                {
                    pool.Return(array);
                }
            },
            filler);
    }
}
