using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The fast paths find a thread's last cache through <see cref="LastUsedCache{TCache}"/>: its read must allocate
/// nothing on a thread's first touch (a return must not throw at the GC heap limit, and a reference thread-static's
/// first read allocated 136 bytes there), the cache must live exactly as long as its thread holds it, and the weak
/// handle behind it must root nothing once the thread is gone.
/// </summary>
public sealed class LastUsedCacheTests
{
    [Fact]
    public void AThreadsFirstReadAllocatesNothingAndFindsNoCache()
    {
        long allocated = -1;
        Marker? found = new();
        RunOnAThreadOfItsOwn(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            found = LastUsedCache<Marker>.Current;
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        });

        Assert.Null(found);
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void ACacheSetLivesWithItsThreadAndIsFoundThroughCollections()
    {
        RunOnAThreadOfItsOwn(() =>
        {
            WeakReference first = SetNew(out int firstId);
            Collect();
            Assert.True(first.IsAlive, "the thread's last cache was collected while its thread lived");
            Assert.Equal(firstId, CurrentId());

            // Replaced: the new one is found, the old one is no longer held.
            WeakReference second = SetNew(out int secondId);
            Collect();
            Assert.Equal(secondId, CurrentId());
            Assert.False(first.IsAlive, "a replaced cache stayed reachable");
            Assert.True(second.IsAlive);
        });
    }

    [Fact]
    public void ADeadThreadsCacheIsCollected()
    {
        // Many threads, each with a cache of its own: once they are gone, nothing holds any of them.
        var caches = new WeakReference[64];
        for (int i = 0; i < caches.Length; i++)
        {
            int index = i;
            RunOnAThreadOfItsOwn(() => caches[index] = SetNew(out _));
        }

        Collect();
        Collect();
        Assert.DoesNotContain(caches, static cache => cache.IsAlive);
    }

    // Not inlined, here and below: no reference to a marker is left in the test's own frame.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int? CurrentId() => LastUsedCache<Marker>.Current?.Id;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference SetNew(out int id)
    {
        var marker = new Marker();
        id = marker.Id;
        LastUsedCache<Marker>.Set(marker);
        return new WeakReference(marker);
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    private static void RunOnAThreadOfItsOwn(Action action)
    {
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            try
            {
                action();
            }
            catch (Exception error)
            {
                thrown = error;
            }
        });
        thread.Start();
        thread.Join();
        Assert.Null(thrown);
    }

    private sealed class Marker
    {
        private static int s_lastId;

        public int Id { get; } = Interlocked.Increment(ref s_lastId);
    }
}
