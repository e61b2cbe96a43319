using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A <see cref="NativeMemoryManager"/> made by the user over a releaser of the user's. A leaked manager is reclaimed
/// on the finalizer thread, where an exception ends the process: a releaser whose <c>Reclaim</c> (by default its
/// <c>Release</c>) throws, say because the user's own pool was disposed meanwhile, ended the process. The manager takes
/// such an exception as the releaser refusing the block, and never offers it again.
/// </summary>
public sealed class ForeignReleaserTests
{
    [Fact]
    public void ALeakedManagerWhoseReleaserThrowsOnTheFinalizerThreadDoesNotEndTheProcess()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(ForeignReleaserTests), nameof(ALeakedManagerWhoseReleaserThrowsOnTheFinalizerThreadDoesNotEndTheProcess)))
        {
            return;
        }

        var releaser = new ThrowingReleaser();
        nint block = Leak(releaser);
        try
        {
            // Reclaimed at the second collection that finds the same rent unreachable.
            for (int i = 0; i < 8 && releaser.Calls == 0; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            Assert.Equal(1, releaser.Calls);

            // Refused once, never offered again (it would throw at every collection).
            for (int i = 0; i < 4; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            Assert.Equal(1, releaser.Calls);
        }
        finally
        {
            unsafe
            {
                NativeMemory.Free((void*)block);
            }
        }
    }

    [Fact]
    public void AReleaserThatThrowsFromDisposePassesItsErrorToTheCallerAndIsNotCalledAgain()
    {
        var releaser = new ThrowingReleaser();
        nint block;
        unsafe
        {
            block = (nint)NativeMemory.Alloc(64);
        }

        try
        {
            var manager = new NativeMemoryManager(block, 64, releaser);
            Assert.Equal(ThrowingReleaser.Refusal, Assert.Throws<InvalidOperationException>(manager.Dispose).Message);
            Assert.True(manager.IsDisposed);
            manager.Dispose();
            Assert.Equal(1, releaser.Calls);
            _ = Assert.Throws<ObjectDisposedException>(() => manager.Memory);
        }
        finally
        {
            unsafe
            {
                NativeMemory.Free((void*)block);
            }
        }
    }

    [Fact]
    public void ALeakedManagerWhoseReclaimRunsOutOfManagedMemoryIsOfferedAgainAtALaterCollection()
    {
        // In a process of its own: the test counts collections and finalizer runs, which the suite's other tests disturb.
        if (IsolatedProcess.RunsElsewhere(typeof(ForeignReleaserTests), nameof(ALeakedManagerWhoseReclaimRunsOutOfManagedMemoryIsOfferedAgainAtALaterCollection)))
        {
            return;
        }

        var releaser = new OutOfMemoryOnceReleaser();
        nint block = Leak(releaser);
        try
        {
            // The first offer (at the second collection that finds the rent unreachable) runs out of managed memory,
            // as a quarantine at the GC heap limit does: the manager must stay the leaked rent's, live and registered,
            // so a later collection offers it again. Left marked returned, no collection ever would, and the pool
            // would count the block in use for good.
            for (int i = 0; i < 16 && releaser.Taken is null; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            Assert.True(releaser.Taken is not null, $"the block was offered {releaser.Calls} time(s) and never again after the offer that ran out of memory");
            Assert.Equal(2, releaser.Calls);
            Assert.True(releaser.Taken.IsReturned, "the block taken on the second offer is not marked returned");

            // The failed offer did not count as a reclaim: one move of the generation, for the one that succeeded.
            Assert.Equal(1, releaser.Taken.Generation);
        }
        finally
        {
            unsafe
            {
                NativeMemory.Free((void*)block);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static unsafe nint Leak(INativeMemoryReleaser releaser)
    {
        nint block = (nint)NativeMemory.Alloc(64);
        _ = new NativeMemoryManager(block, 64, releaser);
        return block;
    }

    private sealed class ThrowingReleaser : INativeMemoryReleaser
    {
        public const string Refusal = "The user's pool was disposed: it takes no block back.";

        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public void Release(NativeMemoryManager buffer)
        {
            Interlocked.Increment(ref _calls);
            throw new InvalidOperationException(Refusal);
        }
    }

    /// <summary>Runs out of managed memory at its first <c>Reclaim</c>, as a quarantine at the GC heap limit does, and keeps the block at the next.</summary>
    private sealed class OutOfMemoryOnceReleaser : INativeMemoryReleaser
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public NativeMemoryManager? Taken { get; private set; }

        public void Release(NativeMemoryManager buffer) => throw new InvalidOperationException("only leaks come here");

        [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2201:Do not raise reserved exception types", Justification = "It stands in for the runtime's own, thrown by a quarantine's list at the heap limit.")]
        public void Reclaim(NativeMemoryManager buffer)
        {
            if (Interlocked.Increment(ref _calls) == 1)
            {
                throw new OutOfMemoryException("the quarantine's list could not grow");
            }

            Taken = buffer;
        }
    }
}
