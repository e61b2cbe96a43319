using System;
using System.Reflection;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An array pool's trim that waits for another (the pressure watch's, the idle tick's, a dropped pool's finalizer,
/// a caller's Trim) must allocate nothing either: the trims run when the managed heap nears its limit, and an
/// allocation for the wait there throws before anything is dropped (ArrayPoolTrimHeapLimitSafetyTests).
/// </summary>
public sealed class ContendedArrayPoolTrimSafetyTests
{
    private const int ArrayLength = 64 * 1024;
    private const int ArraysCached = 8;

    [Fact]
    public void ATrimWaitingForAnotherTrimAllocatesNothing()
    {
        var options = new TieredArrayPoolOptions { ThreadCacheMaxArrays = 4, IdleReleaseDelay = Timeout.InfiniteTimeSpan };

        // The whole trim once, uncontended, so what is measured below is the wait alone.
        var warm = new TieredArrayPool(options);
        CachedArrays.Fill(warm, ArraysCached, ArrayLength);
        warm.Trim();

        var pool = new TieredArrayPool(options);
        CachedArrays.Fill(pool, ArraysCached, ArrayLength);
        long allocated = -1;
        var trimmer = new Thread(() => allocated = ThreadAllocations.During(pool.Trim));
        using (TrimLockHeld(pool))
        {
            trimmer.Start();

            // Released only once the trimmer waits in the lock, past its spinning: a wait that allocates has done so.
            Assert.True(SpinWait.SpinUntil(() => (trimmer.ThreadState & ThreadState.WaitSleepJoin) != 0, TimeSpan.FromSeconds(10)), "the trim never waited for the lock");
            Thread.Sleep(50);
        }

        trimmer.Join();
        Assert.True(allocated == 0, $"a trim that waited for another allocated {allocated} bytes");
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    /// <summary>Holds the pool's trim lock on another thread, as a trim running there would, until disposed.</summary>
    private static Holder TrimLockHeld(TieredArrayPool pool)
    {
        object trimLock = typeof(TieredArrayPool).GetField("_trimLock", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;
        var holder = new Holder(trimLock);
        holder.Held.Wait();
        return holder;
    }


    /// <summary>A thread holding a lock (a <see cref="Lock"/> or a monitor, whichever the pool uses) until disposed.</summary>
    private sealed class Holder : IDisposable
    {
        private readonly ManualResetEventSlim _release = new();
        private readonly Thread _thread;

        public Holder(object trimLock)
        {
            _thread = new Thread(() =>
            {
                if (trimLock is Lock lockObject)
                {
                    using (lockObject.EnterScope())
                    {
                        Held.Set();
                        _release.Wait();
                    }
                }
                else
                {
                    lock (trimLock)
                    {
                        Held.Set();
                        _release.Wait();
                    }
                }
            });
            _thread.Start();
        }

        public ManualResetEventSlim Held { get; } = new();

        public void Dispose()
        {
            _release.Set();
            _thread.Join();
            _release.Dispose();
            Held.Dispose();
        }
    }
}
