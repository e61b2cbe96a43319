using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A pool of pinned arrays disposed while one of its regions is on its way to the list of unmaps: the release read the
/// pool live (so the array was to wait out the idle delay, against stale writes) and the dispose, which lets a disposed
/// pool's pinned arrays go at once, drained the list before the array was on it. The release must let it go itself,
/// or the array stays on the heap, counted in <c>BytesAwaitingRelease</c>, for a whole delay after the dispose (ten
/// minutes for some servers). Here the dispose runs inside the release's page drop, where another thread's could.
/// </summary>
public sealed class PinnedLetGoRacingDisposeSafetyTests
{
    private const int RegionSize = 100_000;

    [Fact]
    public void AnArrayLetGoOfWhileThePoolIsBeingDisposedLeavesWithTheRestNotADelayLater()
    {
        var allocator = new DisposingPinnedArrayAllocator();
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, new FakeTimeProvider());
        options.PageAllocator = allocator;
        options.FallbackPageAllocator = null;

        // One region cached at most: the second return parks in the thread's slot and evicts the first, which is let
        // go of within its delay (no lock held there, as for any return over the limits).
        options.RegionCacheMaxCount = 1;
        options.AdaptiveCaches = false;
        var pool = new TieredMemoryPool(options);
        allocator.Pool = pool;

        IMemoryOwner<byte> first = pool.Rent(RegionSize);
        IMemoryOwner<byte> second = pool.Rent(RegionSize);
        first.Dispose();
        allocator.DisposeAtNextPageDrop();
        second.Dispose();

        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(allocator.DisposedInADrop, $"no region was let go of within its delay: the race was not run\n{after}");
        Assert.True(after.BytesAwaitingRelease == 0, $"{after.BytesAwaitingRelease} bytes of pinned arrays wait out the delay after the pool's dispose, though a disposed pool lets them go at once\n{after}");
    }

    /// <summary>Pinned arrays whose next page drop, once armed, disposes the pool first (as a thread racing it would).</summary>
    private sealed class DisposingPinnedArrayAllocator : PinnedArrayPageAllocator
    {
        private int _armed;

        public TieredMemoryPool? Pool { get; set; }

        public bool DisposedInADrop { get; private set; }

        public void DisposeAtNextPageDrop() => Volatile.Write(ref _armed, 1);

        public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
        {
            if (advice == PageAdvice.DontNeed && Interlocked.Exchange(ref _armed, 0) == 1)
            {
                DisposedInADrop = true;
                Pool!.Dispose();
            }

            return base.TryAdvise(address, length, advice);
        }
    }
}
