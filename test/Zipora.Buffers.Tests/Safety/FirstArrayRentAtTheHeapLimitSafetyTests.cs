using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An array pool made at start-up rents for the first time where managed memory has run out. Its first rent or return
/// reads the class's thread-static, which ran the class's type initializer, and that made the whole shared pool: it
/// threw out of memory there, and a type initializer that threw throws for good, so every later rent and return of
/// every array pool threw <see cref="TypeInitializationException"/>. The shared pool is now made at its own first use.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FirstArrayRentAtTheHeapLimitSafetyTests
{
    private const int HeadroomStep = 64;
    private const int MostHeadroom = 16 * 1024;
    private static readonly int[] s_lengths = [64, 4096, 100_000, 3_000_000];

    [Fact]
    public void APoolsFirstRentAtTheHeapLimitLeavesEveryLaterRentAndReturnWorking()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FirstArrayRentAtTheHeapLimitSafetyTests), nameof(APoolsFirstRentAtTheHeapLimitLeavesEveryLaterRentAndReturnWorking)))
        {
            return;
        }

        long backgroundFailures = BackgroundFailures.Count;
        var pool = new TieredArrayPool();

        // The pool's first rent and return: refused for want of managed memory, they must break nothing.
        string sweep = FirstRunSweep.AtTheHeapLimit(() => pool.Return(pool.Rent(64)), HeadroomStep, MostHeadroom, "the first rent");

        // With room again: every length rents and returns, on this thread and on a fresh one.
        Exception? later = Record.Exception(() =>
        {
            foreach (int length in s_lengths)
            {
                pool.Return(pool.Rent(length));
            }
        });
        Exception? elsewhere = FreshThread.Run(() => pool.Return(pool.Rent(4096)));
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);

        Assert.True(later is null && elsewhere is null, $"{sweep}\nthe rents with room: {later}\non a fresh thread: {elsewhere}");
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }
}
