using System;
using System.Collections.Generic;

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
    private const int FullHeapProbe = 8 * 1024;
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
        var filler = new List<byte[]>(400_000);
        int attempts = 0;
        int fullAttempts = 0;
        Exception? atTheLimit = null;
        int headroom = 0;

        // The pool's first rent and return with the heap full but for a few bytes, more at each attempt until they go
        // through: refused for want of managed memory, they must break nothing.
        for (; headroom <= MostHeadroom; headroom += HeadroomStep)
        {
            List<byte[]>? reserve = null;
            atTheLimit = HeapFiller.ThrownOnAFreshThread(
                withRoom: () =>
                {
                    reserve = HeapFiller.Reserve(headroom);
                    GC.Collect();
                },
                atTheLimit: () =>
                {
                    for (int topUp = 0; topUp < 3 && HeapFiller.HasRoomFor(FullHeapProbe); topUp++)
                    {
                        HeapFiller.Fill(filler, largest: 1 << 20, smallest: 24);
                    }

                    fullAttempts += HeapFiller.HasRoomFor(FullHeapProbe) ? 0 : 1;
                    reserve!.Clear();
                    pool.Return(pool.Rent(64));
                },
                filler);
            filler.Clear();
            GC.Collect();
            attempts++;
            if (atTheLimit is not OutOfMemoryException)
            {
                break;
            }
        }

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

        TestContext.Current.SendDiagnosticMessage($"{attempts} attempts, {fullAttempts} with the heap full; the rent went through with {headroom} bytes of headroom");
        Assert.True(fullAttempts > 0, $"none of {attempts} rents had the heap full besides their headroom (no room for {FullHeapProbe} bytes): the test proves nothing");
        Assert.True(atTheLimit is null, $"the rent with {headroom} bytes of headroom threw other than OutOfMemoryException: {atTheLimit}");
        Assert.True(later is null && elsewhere is null, $"the rents with room: {later}\non a fresh thread: {elsewhere}");
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }
}
