using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The pool's disposal: by its caller, by its finalizer's work item, and its end by the timer when a dispose ran out of managed memory partway.</summary>
public sealed partial class TieredMemoryPool
{
    // Where disposal stands (_disposed): not begun, running, stopped partway by an OutOfMemoryException (the next
    // dispose, or a tick of the pool's timer, finishes it), done. Every state but the first counts as disposed.
    private const int Live = 0;
    private const int Disposing = 1;
    private const int DisposeUnfinished = 2;
    private const int Disposed = 3;

    // The finalizer's work item, made with the pool: as a static lambda in the finalizer, its delegate and its class's
    // statics were made at the first pool's finalization, which comes when the GC runs short, maybe at its heap limit;
    // a type initializer failing there threw TypeInitializationException out of the finalizer, which ends the process.
    private readonly Action<TieredMemoryPool> _disposeDropped = static pool => pool.DisposeDropped();

    /// <summary>
    /// Disposes a pool dropped without <see cref="MemoryPool{T}.Dispose()"/>, so its native memory goes back to the OS
    /// as a disposed pool's does: buffers still rented stay valid and are freed when returned, memory returned less
    /// than one delay ago and leaked blocks in quarantine wait out their delay.
    /// </summary>
    /// <remarks>
    /// Not on the finalizer thread: disposing takes the tiers' locks, waits for threads to leave their caches and makes
    /// system calls. The work item revives the pool until its memory is drained, as the idle releaser holds any
    /// disposed pool that still has memory waiting; then nothing refers to it.
    /// </remarks>
    ~TieredMemoryPool()
    {
        try
        {
            _ = ThreadPool.UnsafeQueueUserWorkItem(_disposeDropped, this, preferLocal: false);
        }
        catch (OutOfMemoryException)
        {
            // Nothing may leave a finalizer. Out of managed memory for the work item, the pool waits for a later
            // collection to try again.
            GC.ReRegisterForFinalize(this);
        }
    }

    /// <summary>The finalizer's work item: nobody calls it to catch what it throws, so a failure is reported (see <see cref="BackgroundFailures"/>).</summary>
    private void DisposeDropped()
    {
        try
        {
            // Shared too: its finalizer runs only when the collectible context that loaded the library is collected
            // (a static keeps it otherwise), and its memory would stay mapped for the life of the process.
            DisposeOnce();
        }
        catch (Exception error)
        {
            BackgroundFailures.Report("disposing a pool dropped without dispose", error);
        }
    }

    /// <summary>
    /// Stops renting and frees every cached buffer. Buffers still rented stay valid; when their owners dispose them,
    /// their memory is freed instead of cached. Memory returned less than one idle delay ago has its pages dropped now
    /// and is unmapped when the delay is over (pinned arrays, whose pages cannot be dropped, are let go of to the GC at
    /// once: a stale <c>Span</c> keeps its array alive), and leaked blocks wait out their quarantine untouched: the
    /// pool's timer lives on until then. Does nothing for <see cref="Shared"/>. A pool dropped without it is disposed by its
    /// finalizer.
    /// </summary>
    /// <remarks>
    /// In a process out of managed memory (at its GC heap limit) it may throw <see cref="OutOfMemoryException"/>
    /// partway. The pool then counts as disposed, loses no buffer and keeps every mapping it has not freed yet: each
    /// tier was disposed or left whole, and a later call finishes the job, as does the pool's own timer at its next
    /// tick when nobody calls again. Rents may still be served meanwhile by a tier not yet disposed. A call while
    /// another runs, or after one finished, does nothing.
    /// </remarks>
    protected override void Dispose(bool disposing)
    {
        if (!_isShared)
        {
            DisposeOnce();
        }
    }

    /// <summary>Disposes the pool unless that is done or running; finishes a dispose that stopped partway.</summary>
    private void DisposeOnce()
    {
        if (!TryStartDisposing())
        {
            return;
        }

        bool finished = false;
        try
        {
            _idleReleaser.HoldStrongly(this);
            DisposeTiers();
            _unmaps.ReleasePinnedArraysFromNowOn();
            PoolMetrics.Forget(this);
            finished = true;
        }
        finally
        {
            Volatile.Write(ref _disposed, finished ? Disposed : DisposeUnfinished);
            _drainingAfterDispose = finished;

            // A releaser that paused because it found the pool collected (before this work item held it) stays paused
            // unless woken: memory waiting in the quarantine since then (a leaked block reclaimed in between) would
            // never be ticked out, nor a dispose that stopped partway finished. Waking a running releaser does nothing;
            // a woken one pauses again at its next tick if nothing waits.
            _idleReleaser.Wake();
        }
    }

    /// <summary>Claims the disposal of a live pool, or of one whose last dispose stopped partway; false while another runs, or once one finished.</summary>
    private bool TryStartDisposing()
    {
        int state = Volatile.Read(ref _disposed);
        while (state is Live or DisposeUnfinished)
        {
            int seen = Interlocked.CompareExchange(ref _disposed, Disposing, state);
            if (seen == state)
            {
                return true;
            }

            state = seen;
        }

        return false;
    }

    /// <summary>
    /// Disposes every tier, each also when one before it threw (out of managed memory): a failure leaves its tier whole
    /// for the next dispose, and keeps no other tier's memory mapped until then. A tier disposed already does nothing,
    /// and one not made (a constructor that failed partway) is passed by.
    /// </summary>
    private void DisposeTiers()
    {
        try
        {
            _small?.Dispose();
        }
        finally
        {
            try
            {
                _medium?.Dispose();
            }
            finally
            {
                try
                {
                    _large?.Dispose();
                }
                finally
                {
                    _huge?.Dispose();
                }
            }
        }
    }
}
