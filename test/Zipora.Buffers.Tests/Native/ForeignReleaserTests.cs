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
}
