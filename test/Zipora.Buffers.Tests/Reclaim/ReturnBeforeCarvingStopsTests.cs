using System;
using System.Buffers;
using System.Reflection;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A slab tier's dispose marks the tier disposed, then stops its heap's carving, which counts every block each slab
/// carved as one it waits for. A block returned in between, on a thread with no cache of the tier (which the disposed
/// tier no longer makes), once went straight to the heap as a late return: it was counted down before the count was
/// made, the count then waited for it again, and its slab stayed mapped for the life of the process. The heap's lock,
/// held here by the returning thread while the dispose waits for it to stop the carving, puts the return there every run.
/// </summary>
public sealed class ReturnBeforeCarvingStopsTests
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    [Theory]
    [InlineData(64, "_small")]
    [InlineData(4096, "_medium")]
    public void ABlockReturnedBetweenTheTiersDisposalAndItsHeapsStopIsUnmappedWithItsSlab(int size, string tierField)
    {
        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, PageAllocator = allocator, IdleReleaseDelay = SafetyCases.IdleDelay, EnableHugepages = false });
        IMemoryOwner<byte> late = pool.Rent(size);
        object tier = typeof(TieredMemoryPool).GetField(tierField, Private)!.GetValue(pool)!;
        object heap = tier.GetType().BaseType!.GetField("_heap", Private)!.GetValue(tier)!;
        object heapLock = heap.GetType().GetField("_lock", Private)!.GetValue(heap)!;
        var disposer = new Thread(pool.Dispose);
        string? failure = null;

        // A thread of its own, with no cache of the tier: it holds the heap's lock (re-entered by its own return).
        var returner = new Thread(() =>
        {
            lock (heapLock)
            {
                disposer.Start();
                if (!SpinWait.SpinUntil(() => (disposer.ThreadState & ThreadState.WaitSleepJoin) != 0 && IsDisposed(tier), TimeSpan.FromSeconds(10)))
                {
                    failure = "the dispose never waited to stop the heap's carving";
                    return;
                }

                late.Dispose();
            }
        });
        returner.Start();
        Assert.True(returner.Join(TimeSpan.FromSeconds(20)), "the return never ended");
        Assert.True(disposer.Join(TimeSpan.FromSeconds(10)), "the dispose never ended");
        Assert.True(failure is null, failure);

        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        allocator.AssertNoneLive($"three delays after a dispose whose heap stopped carving after a block came back\n{pool.GetStatistics()}");
    }

    private static bool IsDisposed(object tier) =>
        (bool)tier.GetType().BaseType!.GetField("_disposed", Private)!.GetValue(tier)!;
}
