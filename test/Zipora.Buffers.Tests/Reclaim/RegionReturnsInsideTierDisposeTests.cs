using System;
using System.Buffers;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A region tier's dispose marks it disposed, closes the threads' slots and empties them (retiring the slots of exited
/// threads), then unmaps what it caches. Regions come back in each of those windows every run, from every kind of
/// thread: the slot's owner (its slot full, so one region goes on to the cache), another thread with a slot, a thread
/// without one, a thread-pool thread, and a thread that exits with a region parked. None is unmapped before its delay
/// (a stale Span may still write to it), none is lost or unmapped twice, a buffer rented across the dispose keeps its
/// bytes, and a rent in the window is either served and counted, or refused.
/// </summary>
/// <remarks>
/// The windows are held open through the tier's own locks, as ReturnBeforeCarvingStopsTests does for the slab tiers:
/// its trim lock (the dispose has marked the tier disposed and waits to close the slots), its registry's lock (the slots
/// are closed, not yet emptied), and the first page drop of the dispose itself (the slots emptied, their regions on their
/// way out, the cache not yet drained).
/// </remarks>
public sealed class RegionReturnsInsideTierDisposeTests
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    public static TheoryData<int, string, OwnerMode, string> Windows()
    {
        var data = new TheoryData<int, string, OwnerMode, string>();
        foreach ((int size, string tier) in new[] { (100_000, "_large"), (3_000_000, "_huge") })
        {
            foreach (OwnerMode mode in SafetyCases.BothOwnerModes)
            {
                foreach (string window in new[] { "trim lock", "registry lock", "first page drop" })
                {
                    data.Add(size, tier, mode, window);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Windows))]
    public void RegionsReturnedInsideATiersDisposeAreEachUnmappedOnceAfterTheirDelay(int size, string tierField, OwnerMode mode, string window)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(mode, time);
        options.EnableHugepages = false;
        var pool = new TieredMemoryPool(options);
        object tier = typeof(TieredMemoryPool).GetField(tierField, Private)!.GetValue(pool)!;

        // The owner's thread (index 0) parks one region and holds three: one to return into its full slot, one rented
        // across the dispose, one of a larger class for a thread without a slot. The other thread parks one of its own.
        using var threads = new KeptThreads(2);
        IMemoryOwner<byte>? late = null, held = null, otherClass = null;
        threads.RunOnEach(index =>
        {
            IMemoryOwner<byte> parked = pool.Rent(size);
            if (index == 0)
            {
                late = pool.Rent(size);
                held = pool.Rent(size);
                otherClass = pool.Rent(size * 2);
            }

            parked.Dispose();
        });
        IMemoryOwner<byte> crossThread = pool.Rent(size);
        IMemoryOwner<byte> poolThread = pool.Rent(size);
        held!.Memory.Span.Fill(0x5A);
        using var exitNow = new ManualResetEventSlim();
        using var exitingParked = new ManualResetEventSlim();
        var exiting = new Thread(() =>
        {
            pool.Rent(size).Dispose();
            exitingParked.Set();
            exitNow.Wait();
        });
        exiting.Start();

        // Parked before the dispose starts: a thread started late (a loaded machine, a collection) rented after the tier
        // was marked disposed, and the ObjectDisposedException it threw, unhandled on its thread, held it there (the xUnit
        // runner's handler waits for the run to end), so the returns, waiting for it to exit, never ended: "the dispose
        // never ended" beside SharedTickerTests. Its region was not parked in the dispose's windows either.
        Assert.True(exitingParked.Wait(TimeSpan.FromSeconds(20)), "the exiting thread never parked its region");

        // Nothing was returned a delay ago: the clock stays put until every region is back, so any unmap before it moves
        // is one within its delay.
        int earlyUnmaps = 0;
        allocator.BeforeUnmap = () => Interlocked.Increment(ref earlyUnmaps);

        IMemoryOwner<byte>? rentedInTheWindow = null;
        var disposer = new Thread(pool.Dispose);
        void ReturnEverywhere()
        {
            threads.RunOnEach(index =>
            {
                if (index == 0)
                {
                    late!.Dispose();
                    rentedInTheWindow = RentOrRefused(pool, size);
                }
                else
                {
                    crossThread.Dispose();
                }
            });
            Assert.Null(FreshThread.Run(otherClass!.Dispose));
            Task.Run(poolThread.Dispose).Wait();
            exitNow.Set();
            exiting.Join();
        }

        string? failure = window == "first page drop"
            ? HoldInTheFirstPageDrop(allocator, disposer, ReturnEverywhere)
            : HoldTheLock(WindowLock(tier, window), tier, disposer, ReturnEverywhere);

        Assert.True(disposer.Join(TimeSpan.FromSeconds(20)), "the dispose never ended");
        Assert.True(failure is null, failure);
        Assert.True(Volatile.Read(ref earlyUnmaps) == 0, $"{earlyUnmaps} regions unmapped within their delay");
        Assert.True(held.Memory.Span.IndexOfAnyExcept((byte)0x5A) < 0, "the buffer rented across the dispose lost its bytes");
        TieredMemoryPoolStatistics afterDispose = pool.GetStatistics();
        Assert.True(afterDispose.BytesInUse == held.Memory.Length + (rentedInTheWindow?.Memory.Length ?? 0), $"in use after the dispose: {afterDispose}");

        held.Dispose();
        rentedInTheWindow?.Dispose();
        TieredMemoryPoolStatistics allBack = pool.GetStatistics();
        Assert.True(allBack.BytesInUse == 0 && allBack.BytesRetained == 0, $"everything back: {allBack}");
        allocator.BeforeUnmap = null;
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.MmapCalls == drained.MunmapCalls, $"three delays later: {drained}");
        allocator.AssertNoneLive($"three delays after the dispose\n{drained}");
    }

    /// <summary>A rent racing the dispose: served (the tier not yet closed) or refused, never lost.</summary>
    private static IMemoryOwner<byte>? RentOrRefused(TieredMemoryPool pool, int size)
    {
        try
        {
            return pool.Rent(size);
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
    }

    private static object WindowLock(object tier, string window)
    {
        Type regionTier = tier.GetType().BaseType!;
        if (window == "trim lock")
        {
            return regionTier.GetField("_trimLock", Private)!.GetValue(tier)!;
        }

        object registry = regionTier.GetField("_registry", Private)!.GetValue(tier)!;
        return registry.GetType().GetProperty("Lock")!.GetValue(registry)!;
    }

    /// <summary>Holds <paramref name="windowLock"/> on a thread of its own while the dispose, marked, waits for it; runs the returns there.</summary>
    private static string? HoldTheLock(object windowLock, object tier, Thread disposer, Action returns)
    {
        FieldInfo disposed = tier.GetType().BaseType!.GetField("_disposed", Private)!;
        string? failure = null;
        var holder = new Thread(() =>
        {
            lock (windowLock)
            {
                disposer.Start();
                if (!SpinWait.SpinUntil(() => (disposer.ThreadState & ThreadState.WaitSleepJoin) != 0 && (bool)disposed.GetValue(tier)!, TimeSpan.FromSeconds(10)))
                {
                    failure = "the dispose never waited for the lock";
                    return;
                }

                try
                {
                    returns();
                }
                catch (Exception error)
                {
                    failure = error.ToString();
                }
            }
        });
        holder.Start();
        return holder.Join(TimeSpan.FromSeconds(20)) ? failure : "the returns never ended";
    }

    /// <summary>Runs the returns inside the dispose's first page drop, on the disposing thread.</summary>
    private static string? HoldInTheFirstPageDrop(LiveMappingsAllocator allocator, Thread disposer, Action returns)
    {
        string? failure = "the dispose dropped no pages";
        int once = 0;
        allocator.BeforeAdvise = _ =>
        {
            if (Thread.CurrentThread == disposer && Interlocked.Exchange(ref once, 1) == 0)
            {
                try
                {
                    returns();
                    failure = null;
                }
                catch (Exception error)
                {
                    failure = error.ToString();
                }
            }
        };
        disposer.Start();
        return disposer.Join(TimeSpan.FromSeconds(20)) ? failure : "the dispose never ended";
    }
}
