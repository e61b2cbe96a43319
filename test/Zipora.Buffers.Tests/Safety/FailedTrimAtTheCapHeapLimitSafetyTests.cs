using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent past <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> trims the pool, and the refusals after it rest (trim
/// no more) until the pool's activity moves (see <c>LimitTrim</c>). The rest took the activity as trimmed before the
/// trim ran: a trim that ran out of managed memory partway (a slab tier's trim made room for the free blocks it took
/// out, at the GC heap limit too; it now sorts them where they lie, and the failure is injected before its first slab:
/// <see cref="SlabTrimFault"/>) gave nothing back, and every later rent at the cap rested on it, refused, with the
/// free blocks still cached, once the heap had room again and for as long as the pool was not otherwise used. Each
/// round is a fresh pool at its cap with a slab of free small blocks and a cached large region, a rent of the whole cap with the heap filled but for 0 to
/// 2 KB, then the heap let go of and the same rent again, in a child process at the GC heap limit.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FailedTrimAtTheCapHeapLimitSafetyTests
{
    private const int Slab = 64 * 1024;
    private const int Region = 64 * 1024;

    // The small slab and the large region cached: all the cap holds, and what the rent at it needs given back.
    private const int Cap = Slab + Region;
    private const int RentAtTheCap = Cap;
    private const int MaxHeadroom = 2048;
    private const int Step = 16;

    [Fact]
    public void ARentAtTheCapAfterATrimThatRanOutOfManagedMemoryTrimsAgainAndIsServed()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FailedTrimAtTheCapHeapLimitSafetyTests), nameof(ARentAtTheCapAfterATrimThatRanOutOfManagedMemoryTrimsAgainAndIsServed)))
        {
            return;
        }

        var filler = new List<byte[]>(400_000);
        var failures = new List<string>();
        long backgroundFailures = BackgroundFailures.Count;
        int trimsThatThrew = 0;
        Exception? unexpected = FreshThread.Run(() =>
        {
            // Every path compiled while there is room.
            _ = Round(filler, headroom: -1, failures);
            for (int headroom = 0; headroom <= MaxHeadroom; headroom += Step)
            {
                trimsThatThrew += Round(filler, headroom, failures) ? 1 : 0;
            }
        });

        // The pools' own background work (the pressure watcher's reads) runs out of memory at the limit too, and says so.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(unexpected is null, $"{unexpected}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));

        // Else no round reached the path under test: a cap's trim that ran out of managed memory partway.
        Assert.True(trimsThatThrew > 0, "no round's trim at the cap ran out of managed memory");
    }

    /// <summary>One round on a fresh pool; whether its first rent's trim at the cap ran out of managed memory.</summary>
    private static bool Round(List<byte[]> filler, int headroom, List<string> failures)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
            ReuseOwners = true,
            EnableHugepages = false,
            MaxBytesInUse = Cap,
        });
        try
        {
            // A large region in the thread's slot: the cap's trim gives it back first, and allocates nothing for it.
            pool.Rent(Region).Dispose();

            // One slab of small blocks, all the cap holds, every block free.
            var owners = new List<IMemoryOwner<byte>>(1024);
            for (int i = 0; i < 1024; i++)
            {
                owners.Add(pool.Rent(16));
            }

            owners.ForEach(static owner => owner.Dispose());
            owners.Clear();

            // The trim fails before its first slab, as it did running out of managed memory for its list of the free
            // blocks before it sorted them where they lie (SlabTrimFault); armed with room, it reflects on the pool.
            Exception? thrown = null;
            SlabTrimFault.FailAfter(pool, slabsFirst: 0);
            if (headroom >= 0)
            {
                HeapFiller.FillLeaving(filler, headroom);
            }

            try
            {
                pool.Rent(RentAtTheCap).Dispose();
            }
            catch (OutOfMemoryException error)
            {
                thrown = error;
            }

            filler.Clear();
            GC.Collect();
            SlabTrimFault.Disarm(pool);

            // The cap's trim began (the region it gives back first waits out its delay, its pages dropped) and ran out
            // of managed memory before the small tier's slab went.
            TieredMemoryPoolStatistics after = pool.GetStatistics();
            bool trimThrew = thrown is not null && after.BytesAwaitingRelease >= Region && after.Small.BytesUncarved + after.Small.BytesRetained > 0;

            // The heap has room again and the pool was not used since: the slab of free blocks is what makes room.
            try
            {
                pool.Rent(RentAtTheCap).Dispose();
            }
            catch (InsufficientMemoryException error)
            {
                // The figures once: a child at the heap limit has little room for a hundred of them.
                failures.Add($"headroom {headroom}: a rent at the cap was refused with a slab of free blocks cached, after a first rent that threw {thrown?.GetType().Name}: {error.Message}" + (failures.Count == 0 ? $"\n{pool.GetStatistics()}" : ""));
            }

            return trimThrew;
        }
        finally
        {
            pool.Dispose();
        }
    }
}
