using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A dispose that finds a call inside the writer's guard leaves the release to that call, which reads the disposed
/// flag as it frees the guard. The call frees the guard with a plain store and reads the flag with no fence between,
/// and the dispose raises the flag and reads the guard the same way, so each may miss the other (a store waiting in
/// its core's buffer while the load after it runs): the call leaves without releasing, the dispose found the guard
/// taken. So the dispose looks again, after a process-wide barrier, and releases if the guard is free by then.
/// Without that second look the writer's segments were never released. The hardware's reordering cannot be summoned;
/// the test puts the call inside by setting the guard taken, and lets the call's store land at the dispose's second
/// look, as the reordering would, its read of the flag having come before.
/// </summary>
public sealed class DisposeMeetingALeavingCallTests
{
    private const long GuardAndThreadBits = 0xFFFF_FFFF;
    private const long Busy = 1;
    private const long OneCallLeft = 1L << 32;

    [Fact]
    public void ADisposeThatFoundACallInsideReleasesTheSegmentsWhenTheCallLeftWithoutSeeingIt()
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 });
        writer.Write("some bytes"u8);

        // A call is inside the guard.
        ref long guard = ref StateOf(ref ChainOf(writer));
        Volatile.Write(ref guard, Volatile.Read(ref guard) | Busy);

        int disposer = Environment.CurrentManagedThreadId;
        bool left = false;
        void Leave()
        {
            // The call's Exit: the guard freed, one call more counted; it read the flag before the dispose raised it.
            ref long state = ref StateOf(ref ChainOf(writer));
            Volatile.Write(ref state, (Volatile.Read(ref state) & ~GuardAndThreadBits) + OneCallLeft);
            left = true;
        }

        SegmentChain.s_beforeDisposeLooksAgain = () =>
        {
            if (Environment.CurrentManagedThreadId == disposer && !left)
            {
                Leave();
            }
        };
        try
        {
            writer.Dispose();
        }
        finally
        {
            SegmentChain.s_beforeDisposeLooksAgain = null;
        }

        // A dispose that never looked again: the call's store lands after it.
        if (!left)
        {
            Leave();
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(
            statistics.Segmented.LiveBuffers == 0 && statistics.BytesInUse == 0,
            $"the writer's segments were never released: a dispose found a call inside, and the call left without seeing the dispose\n{statistics}");
    }

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_chain")]
    private static extern ref SegmentChain ChainOf(SegmentedBufferWriter writer);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_state")]
    private static extern ref long StateOf(ref SegmentChain chain);
}
