using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Statistics read while buffers move between threads: the per-thread counters are read one thread after another, so
/// a buffer rented on a thread already read and returned on one read later must not make a class's figures negative.
/// </summary>
public sealed class BusyStatisticsTests
{
    [Theory]
    [InlineData(64)]
    [InlineData(4096)]
    public void BuffersRentedOnOneThreadAndReturnedOnAnotherNeverShowNegativeFiguresWhileTheyMove(int size)
    {
        using var pool = new TieredMemoryPool();
        string? negative = WhileBuffersMoveBetweenThreads(
            rentAndTouch: () =>
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Memory.Span[0] = 1;
                return owner.Dispose;
            },
            readNegativeFigures: () => SafetyCases.NegativeFigures(pool.GetStatistics()));
        Assert.True(negative is null, $"while buffers of {size} bytes moved from a renting thread to a returning one, the statistics showed negative figures: {negative}");

        // Quiet again: exact.
        TieredMemoryPoolStatistics quiet = pool.GetStatistics();
        Assert.All(quiet.SizeHistogram, row => Assert.Equal(0, row.BuffersInUse));
        Assert.Equal(0, quiet.Small.BytesInUse + quiet.Medium.BytesInUse);
    }

    [Fact]
    public void ArraysRentedOnOneThreadAndReturnedOnAnotherNeverShowNegativeFiguresWhileTheyMove()
    {
        var pool = new TieredArrayPool();
        string? negative = WhileBuffersMoveBetweenThreads(
            rentAndTouch: () =>
            {
                byte[] array = pool.Rent(4096);
                array[0] = 1;
                return () => pool.Return(array);
            },
            readNegativeFigures: () => pool.GetStatistics().Arrays is { } arrays && (arrays.CacheHits < 0 || arrays.BytesInUse < 0)
                ? $"{arrays.CacheHits} hits, {arrays.BytesInUse} bytes in use"
                : null);
        Assert.True(negative is null, $"while arrays moved from a renting thread to a returning one, the statistics showed negative figures: {negative}");
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    /// <summary>
    /// Rents on one thread and returns on another for up to two seconds, reading the statistics meanwhile; the first
    /// negative figures read, or null.
    /// </summary>
    private static string? WhileBuffersMoveBetweenThreads(Func<Action> rentAndTouch, Func<string?> readNegativeFigures)
    {
        using var stop = new CancellationTokenSource();
        using var handOff = new BlockingCollection<Action>(boundedCapacity: 4);
        var renter = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                Action giveBack = rentAndTouch();
                if (!handOff.TryAdd(giveBack, millisecondsTimeout: 100))
                {
                    giveBack();
                }
            }

            handOff.CompleteAdding();
        });
        var returner = new Thread(() =>
        {
            foreach (Action giveBack in handOff.GetConsumingEnumerable())
            {
                giveBack();
            }
        });
        renter.Start();
        returner.Start();

        string? negative = null;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(2) && negative is null)
        {
            negative = readNegativeFigures();
        }

        stop.Cancel();
        renter.Join();
        returner.Join();
        return negative;
    }
}
