using System;
using System.Buffers;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A segmented writer dropped together with its pool and brought back by a user's finalizer: its tracker's weak
/// reference may be finalized before that finalizer runs (the whole pool is unreachable, so nothing keeps the tracker
/// alive), and the writer's dispose must still be the quiet, once-only dispose the README promises from any thread.
/// Before, it threw <see cref="InvalidOperationException"/> ("Handle is not initialized.") from the weak reference's
/// <c>SetTarget</c>, which in the user's finalizer ended the process (found by <c>ShutdownRevivalTests</c>).
/// </summary>
public sealed class RevivedWriterOfADroppedPoolTests
{
    [Fact]
    public void AWriterRevivedWithItsDroppedPoolDisposesWithoutThrowing()
    {
        int revivedBefore = WriterReviver.Revived;
        for (int i = 0; i < 200; i++)
        {
            DropAWriterWithItsPool(reviverFirst: i % 2 == 0);
        }

        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.True(WriterReviver.Revived - revivedBefore >= 100, $"only {WriterReviver.Revived - revivedBefore} of 200 writers were revived");
        Assert.Empty(WriterReviver.Failures);
    }

    /// <summary>The reviver made before or after the writer: the finalizers' order follows neither, but varies with it.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropAWriterWithItsPool(bool reviverFirst)
    {
        WriterReviver? reviver = reviverFirst ? new WriterReviver() : null;
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMilliseconds(100) });
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[10_000]);
        (reviver ?? new WriterReviver()).Writer = writer;
    }
}
