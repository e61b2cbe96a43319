using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The chain's guard: a call takes it with one compare-exchange and gives it back with a plain store, a read-only call
/// may do without it and prove afterwards that no call ran meanwhile, and a dispose from any thread releases the
/// segments now or as the call inside leaves.
/// </summary>
internal partial struct SegmentChain
{
    // The guard, one long written at once: bits 0-1 say free, taken by a call, or released for good; bits 2-31 hold
    // the managed id of the thread inside if its call may run the user's code (0 otherwise), taken in the same
    // compare-exchange, so a refused call tells re-entry from another thread by what it saw (a separate field would
    // still hold the previous holder's id for a moment); bits
    // 32-63 count the calls that have left the guard, so a call that only reads can tell that no other call ran while
    // it read (see TryStartRead): 2^32 calls would have to run during one read for the count to come round.
    private const long Free = 0;
    private const long Busy = 1;

    // Set for good by the first dispose: busy, with nothing to release any more.
    private const long Released = 2;
    private const long GuardBits = 3;
    private const int ThreadShift = 2;
    private const long ThreadBits = 0xFFFF_FFFC;
    private const long OneCallLeft = 1L << 32;

    /// <summary>
    /// A test's way in where a dispose that found a call inside looks again: the store that frees the guard, of a call
    /// whose read of the disposed flag came before the dispose raised it, may land there (see
    /// <see cref="ReleaseAfterDisposeFoundTheGuardTaken"/>). No thread can be held there otherwise. Null in use: read
    /// only on that path, which only a dispose racing a call takes.
    /// </summary>
    internal static Action? s_beforeDisposeLooksAgain;

    /// <summary>
    /// Starts a call that only reads the chain, without the guard: false when a call is inside or the buffer was
    /// disposed (the caller then takes the guard). Every field read before <see cref="ReadWasQuiet"/> says true may be
    /// torn, and is only to be used after it; what was read is used only if <see cref="IsStillItsOwn"/> says so too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool TryStartRead(out long version)
    {
        version = Volatile.Read(ref Unsafe.AsRef(in _state));
        return (version & GuardBits) == Free;
    }

    /// <summary>
    /// Whether the pool has taken nothing of this buffer: the sweep has not counted it as leaked (its tracker's ticket
    /// is still this buffer's), and <paramref name="tail"/>, its last segment, still holds its block (not reclaimed as
    /// leaked before a sweep ran). False only for a buffer another object's finalizer brought back: the quiet reads
    /// then take the guard, and the guard retires it (see <see cref="RetireIfBlocksReclaimedUnsynchronized"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool IsStillItsOwn(BufferSegment? tail) =>
        (_tracker is null || _tracker.IsHeldBy(_ticket)) && tail is not { StillHoldsItsBlock: false };

    /// <summary>
    /// Whether no call took the guard since <see cref="TryStartRead"/> gave <paramref name="version"/>: every change
    /// to the chain is made under the guard, so what was read in between is one consistent state of the chain, as if
    /// read under the guard. A dispose since makes it false too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool ReadWasQuiet(long version)
    {
        // The reads above stay above the check (on x64 and arm64 alike).
        Volatile.ReadBarrier();
        return Volatile.Read(ref Unsafe.AsRef(in _state)) == version;
    }

    /// <summary>
    /// Takes the guard for a call that may run code of the user's while it holds it (a copy's destination, a foreign
    /// pool), or throws naming <paramref name="typeName"/>: it was disposed, or another call is inside. The guard
    /// records this thread, so a call coming back in from that code is told it re-entered.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter(string typeName) => EnterAs(typeName, CurrentThreadBits());

    /// <summary>
    /// As <see cref="Enter(string)"/>, for a call that runs none of the user's code while it holds the guard (unless
    /// the pool is another than a <see cref="TieredMemoryPool"/>, whose code it may run). Such a call cannot be re-entered,
    /// so a call refused by it is on another thread: the guard need not record which, which spares the thread-local
    /// lookup of its id.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnterForOwnWork(string typeName) => EnterAs(typeName, _settings.Tiered is null ? CurrentThreadBits() : 0);

    private static long CurrentThreadBits() => ((long)Environment.CurrentManagedThreadId << ThreadShift) & ThreadBits;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnterAs(string typeName, long thread)
    {
        if (!TryEnter(thread, out long seen))
        {
            // Re-entered only if the holder recorded this very thread (one that records none runs no user code, so
            // the call it refuses comes from another thread).
            SegmentThrowHelper.ThrowDisposedOrConcurrent(typeName, seen == Released || IsDisposed, (seen & (GuardBits | ThreadBits)) == (CurrentThreadBits() | Busy));
        }

        if (IsDisposed)
        {
            // Disposed while another call was inside, which has just left: its release is done here, on the way out.
            Exit();
            SegmentThrowHelper.ThrowDisposed(typeName);
        }

        if (_tracker is not null && !IsStillItsOwn(_tail))
        {
            // The sweep found this buffer collected, or the pool reclaimed its tail's block as leaked before any sweep
            // ran: it runs again only because another object's finalizer brought it back.
            RetireIfBlocksReclaimedUnsynchronized(typeName);
        }
    }

    /// <summary>Takes the guard for <paramref name="thread"/>; false, with the guard as it was seen, when a call is inside or the buffer was disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryEnter(long thread, out long seen)
    {
        seen = Volatile.Read(ref _state);
        while ((seen & GuardBits) == Free)
        {
            long was = Interlocked.CompareExchange(ref _state, seen | thread | Busy, seen);
            if (was == seen)
            {
                return true;
            }

            // Free still, with another count: a call came and went in between (misuse, or a race that is over).
            seen = was;
        }

        return false;
    }

    /// <summary>Throws <see cref="System.ObjectDisposedException"/> naming <paramref name="typeName"/> once the buffer is disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void ThrowIfDisposed(string typeName)
    {
        if (IsDisposed)
        {
            SegmentThrowHelper.ThrowDisposed(typeName);
        }
    }

    /// <summary>Gives the guard back; if a dispose came meanwhile, does its work now.</summary>
    /// <remarks>
    /// A plain release, no interlocked instruction (one per call is the guard's whole cost): a dispose that finds the
    /// guard taken pays for the fence instead (see <see cref="ReleaseAfterDisposeFoundTheGuardTaken"/>), so at least
    /// one of the two sees the other, and exactly one wins the guard.
    /// </remarks>
    public void Exit()
    {
        // Free again, one more call counted: only the holder writes the guard while it is taken.
        Volatile.Write(ref _state, (_state & ~(GuardBits | ThreadBits)) + OneCallLeft);
        if (Volatile.Read(ref _disposed) != 0)
        {
            _ = ReleaseForGood();
        }
    }

    /// <summary>
    /// Marks the chain disposed, and releases every segment (ending the message they hold), now or when the call
    /// inside the guard leaves. A second dispose, racing or not, does nothing.
    /// </summary>
    public void Dispose()
    {
        Volatile.Write(ref _disposed, 1);
        if (!ReleaseForGood() && Volatile.Read(ref _state) != Released)
        {
            // Not only while the guard still reads taken: a call may have freed it just after the compare-exchange
            // above, having read the flag before this thread's write reached it; the guard then reads free here, and
            // only this thread is left to release.
            ReleaseAfterDisposeFoundTheGuardTaken();
        }
    }

    /// <summary>
    /// A dispose found a call inside: that call releases as it leaves, if it sees the flag. Its <see cref="Exit"/>
    /// frees the guard and reads the flag with no fence between, so it might read the flag before this thread's write
    /// reaches it while this thread's compare-exchange still saw the guard taken. A process-wide barrier closes that
    /// gap (rare: only a dispose racing a call pays it): after it, a call that has not freed the guard yet sees the
    /// flag, and one that has freed it left the guard for the compare-exchange here.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseAfterDisposeFoundTheGuardTaken()
    {
        s_beforeDisposeLooksAgain?.Invoke();
        Interlocked.MemoryBarrierProcessWide();
        _ = ReleaseForGood();
    }

    /// <summary>
    /// For a buffer brought back by another object's finalizer after the pool's sweep counted it as leaked (its
    /// tracker's ticket moved on): if the pool has reclaimed any of its blocks (their generation
    /// moved on), retires the chain for good, without releasing (what the pool did not take yet, it takes once the
    /// buffer is unreachable again), and throws: the buffer must never reach a block that may be another renter's.
    /// </summary>
    private void RetireIfBlocksReclaimedUnsynchronized(string typeName)
    {
        // The spare too: it may hold the block of the thread's last message, which a revived buffer's next segment takes.
        bool reclaimed = _tracker?.SpareSegment is { StillHoldsItsBlock: false };
        for (BufferSegment? segment = _head; segment is not null && !reclaimed; segment = segment.NextSegment)
        {
            reclaimed = !segment.StillHoldsItsBlock;
        }

        if (reclaimed)
        {
            Volatile.Write(ref _disposed, 1);
            Volatile.Write(ref _state, Released);
            SegmentThrowHelper.ThrowDisposed(typeName);
        }
    }

    /// <summary>Takes the guard for good and releases everything; false when the guard was not free.</summary>
    private bool ReleaseForGood()
    {
        // Whoever wins the guard after the flag is set releases; the guard is never given back.
        long free = Volatile.Read(ref _state);
        if ((free & GuardBits) != Free || Interlocked.CompareExchange(ref _state, Released, free) != free)
        {
            return false;
        }

        SegmentedBufferTracker? tracker = _tracker;
        if (tracker is null)
        {
            ReleaseAfterUnsynchronized(null);
            return true;
        }

        try
        {
            // The end index is the message's length: the running index starts at 0 and restarts at each reset.
            tracker.EndMessage(_segmentsThisMessage, EndIndex);
            KeepHeadWhole();
            ReleaseAfterUnsynchronized(null);
        }
        finally
        {
            // The spare goes with the tracker to this thread's cache, its block with it, unless the sweep retired the
            // tracker first: this buffer was counted as leaked, and is not counted twice, and its block goes back.
            // The token goes back with the tracker: kept here, it would keep the next buffer's leak from being seen.
            object token = _token!;
            _token = null;
            BufferSegment? spare = tracker.SpareSegment;
            tracker.SpareSegment = null;
            if (spare is { Capacity: > 0 } whole)
            {
                tracker.AddBytesHeld(-whole.Capacity);
            }

            if (spare is { StillHoldsItsBlock: false })
            {
                // A block taken from the thread's cache and reclaimed since as leaked (this buffer was brought back by
                // another object's finalizer): the quarantine holds it now, and it must not be parked for the next one.
                SegmentedBufferCounters.Release(spare);
                spare = null;
            }

            if (tracker.TryGiveBack(_ticket, token))
            {
                tracker.Counters.Return(tracker, spare);
            }
            else
            {
                SegmentedBufferCounters.Release(spare);
            }
        }

        return true;
    }
}
