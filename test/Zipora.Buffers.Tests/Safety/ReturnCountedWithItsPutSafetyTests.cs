using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A block returned while a trim has its tier's caches closed goes to its class's depot, and is counted as a return
/// under the depot's lock, with the put (<c>SizeClassDepot.TryPutCounted</c>). Counted before the lock, a return
/// stalled between its count and its put was seen by a rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>,
/// whose trim then drained the depot without its block; that trim noted the count as the pool's last activity, and
/// every later rent at the cap rested on it, refused, with the block's slab free and nothing else in use (see
/// <c>LimitTrim</c>). No call lies between the count and the put to hold a thread at, so the test holds the depot's lock
/// instead: the return waits at it, and the rent at the cap runs on the holding thread, whose trim drains the depot
/// through the re-entrant lock: the interleaving the race needs, every run.
/// </summary>
public sealed class ReturnCountedWithItsPutSafetyTests
{
    [Fact]
    public void ARentAtTheCapFindsABlockWhoseReturnWaitedForTheDepotDuringAnotherRentsTrim()
    {
        long slab = LiveMappingsAllocator.MappedBytesOfOne(4096);
        Assert.Equal(slab, LiveMappingsAllocator.MappedBytesOfOne(2048));
        Assert.Equal(slab, LiveMappingsAllocator.MappedBytesOfOne(1024));
        var allocator = new LiveMappingsAllocator();
        TieredMemoryPoolOptions options = allocator.PoolOptions(OwnerMode.Default, new FakeTimeProvider());
        options.AdaptiveCaches = false;
        options.MaxBytesInUse = 2 * slab;
        using var pool = new TieredMemoryPool(options);

        // A 4 KB block on a slab of its own, and a free 2 KB block on another: the cap is full.
        IMemoryOwner<byte> block = pool.Rent(4096);
        pool.Rent(2048).Dispose();

        // A trim is held before its first slab, the medium tier's caches closed. Not in its page drop, as here before:
        // a trim drops the pages of the slabs it let go of once it has reopened the caches and let go of the heap's
        // lock (TrimPageDropLockTests), where a return goes to its thread's cache and never meets the depot.
        using var held = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        SlabTrimFault.RunBefore(
            pool,
            slabsFirst: 0,
            () =>
            {
                held.Set();
                _ = proceed.Wait(TimeSpan.FromSeconds(10));
            },
            fail: false);
        var trimmer = new Thread(pool.Trim);
        trimmer.Start();
        object depotLock = DepotReservation.LockOf(pool, "_medium", 4096);
        var returner = new Thread(block.Dispose);
        IMemoryOwner<byte>? filler = null;
        try
        {
            // The depot's lock only once the trim is held: it drains every depot before its first slab, and one that
            // started late (a busy host) found the lock held and waited there, never reaching the slab.
            // The statistics only once it failed: a read waits for the slab trim held here (it reads the heap's figures
            // under the heap's lock), and an argument is evaluated before the assertion runs.
            if (!held.Wait(TimeSpan.FromSeconds(10)))
            {
                Assert.Fail($"the trim reached no slab\n{pool.GetStatistics()}");
            }

            Monitor.Enter(depotLock);
            try
            {
                // The 4 KB block comes back on a thread of its own, to the depot (the caches are closed), and waits for its lock.
                returner.Start();
                Assert.True(SpinWait.SpinUntil(() => WaitsForAMonitor(returner), TimeSpan.FromSeconds(10)), $"the return never waited for the depot: {returner.ThreadState}");
                proceed.Set();
                Assert.True(trimmer.Join(TimeSpan.FromSeconds(10)), "the trim never ended");

                // A slab of the room the 2 KB one left; then a 1 KB rent, which needs the 4 KB block's slab: its trim drains
                // the depot before the block is in it. Refused, rightly: the block's return has not ended.
                filler = pool.Rent(2048);
                _ = RentRefusal(pool, 1024);
            }
            finally
            {
                Monitor.Exit(depotLock);
            }
        }
        finally
        {
            // Failed early, the trim must not stay held, nor wait on the events once disposed (a throw on its thread).
            proceed.Set();
            _ = trimmer.Join(TimeSpan.FromSeconds(10));
        }

        Assert.True(returner.Join(TimeSpan.FromSeconds(10)), "the return never ended");

        // The return has ended: the 4 KB block's slab is free, and the 1 KB rent is served from its room.
        InsufficientMemoryException? afterReturning = RentRefusal(pool, 1024);
        Assert.True(afterReturning is null, $"a 1 KB rent was refused with the 4 KB block's slab free, its return having waited for the depot during another rent's trim: {afterReturning?.Message}\n{pool.GetStatistics()}");
        filler?.Dispose();
    }

    /// <summary>
    /// Whether <paramref name="thread"/> sits in a managed wait for 50 ms on end. On the return's path, from its
    /// read of the closed caches on, only the depot's lock is one: a thread blocked on a type initializer (or the
    /// JIT) reads as running, not waiting (measured on .NET 10), and the only other monitor, the registry's, no
    /// thread holds for long here; the 50 ms keep a brief wait for it from passing for the depot's.
    /// </summary>
    private static bool WaitsForAMonitor(Thread thread)
    {
        long until = Environment.TickCount64 + 50;
        while (Environment.TickCount64 < until)
        {
            if ((thread.ThreadState & ThreadState.WaitSleepJoin) == 0)
            {
                return false;
            }

            Thread.Sleep(1);
        }

        return true;
    }

    /// <summary>Rents <paramref name="size"/> bytes and returns the buffer; what refused it, if anything.</summary>
    private static InsufficientMemoryException? RentRefusal(TieredMemoryPool pool, int size)
    {
        try
        {
            pool.Rent(size).Dispose();
            return null;
        }
        catch (InsufficientMemoryException error)
        {
            return error;
        }
    }
}
