using System.Threading;

namespace Zipora.Buffers;

/// <summary>The pool's side of the idle releaser's timer and the memory pressure watcher: what runs at each tick.</summary>
public sealed partial class TieredMemoryPool
{
    /// <summary>
    /// Trims because memory runs short: the process's cgroup is near its limit, or the GC near its high-load threshold.
    /// Called by the pool's ticker and by the process-wide pressure watcher at garbage collections.
    /// </summary>
    void IReclaimablePool.TrimUnderPressure()
    {
        if (IsDisposed)
        {
            return;
        }

        // Memory can stay short for good (the application's own working set near the limit): a trim gave back all it
        // could, and another with no rent or return since would walk every free block again for nothing, once a second
        // for as long as the pressure lasts (the watcher's passes). So it rests, as the idle cap does, until the pool is used.
        // Read without allocating: a heap that grew past the pressure threshold between two checks meets this at its
        // limit, where the statistics' snapshot (8 KB) threw before anything was given back.
        (long retained, long activity) = RetainedAndActivity();
        bool due = _pressureCap.IsDue(retained, activity);
        try
        {
            if (due)
            {
                Interlocked.Increment(ref _pressureTrims);
                try
                {
                    _limitTrim.RunNow(pinnedArraysAtOnce: true);
                }
                catch
                {
                    // Gave back nothing of the tier it threw in: no trim to rest on (see RetainedCap.ForgetFailedTrim).
                    _pressureCap.ForgetFailedTrim(activity);
                    throw;
                }
            }
        }
        finally
        {
            // Pinned-array pages cannot be dropped: let go of within the delay (by this trim, or by an earlier trim or
            // cap, which the rest above does not repeat), they waited it out on the list of unmaps (minutes), resident,
            // while the process ran into its limit. Unmapped, they stay committed in the GC's heap until an aggressive
            // collection, which the pool's next tick may not ask for in minutes either, nor the collector within half a
            // minute of one a quiet tick asked for after the first of a burst had been let go of. Also after a trim that
            // threw (a slab tier's, out of managed memory): what the others let go of goes.
            _unmaps.ReleasePinnedArraysNow();
            _ = PinnedMemoryCollector.AfterPressureRelease(_pages.Allocator);
        }

        // Reported after the trim: the reading of the cgroup's charge allocates.
        if (due)
        {
            (long usage, long limit) = MemoryBudget.Current.CgroupCharge();
            ZiporaBuffersEventSource.Log.MemoryPressureTrim(Name, usage, limit);
        }
    }

    /// <summary>Stops the idle ticks for the unload of the library's context, once nothing of the pool waits to be unmapped.</summary>
    void IReclaimablePool.PauseForUnload() => _idleReleaser.PauseIf(_nothingWaiting);

    /// <summary>Called by the idle releaser's timer, four times per delay.</summary>
    void IReclaimablePool.ReleaseIdle(long now, long delayInTicks)
    {
        // Before any leaked block leaves the quarantine: a segmented buffer that holds one was collected, and must be
        // retired (counted as leaked, and made to check its blocks if a finalizer brings it back) before the block can
        // serve another renter.
        SegmentedCounters.Sweep();
        _quarantine.ReleaseDue();
        _unmaps.ReleaseDue();
        if (IsDisposed)
        {
            // A dispose that ran out of managed memory partway, and that nobody called again: each tick tries to finish
            // it (a failure is reported as this tick's, and the next tries again).
            if (Volatile.Read(ref _disposed) == DisposeUnfinished)
            {
                DisposeOnce();
            }

            // A disposed pool is quiet: what its pinned arrays let go of may go back to the OS at once.
            _ = PinnedMemoryCollector.AfterRelease(_pages.Allocator);

            // The timer pauses while nothing waits, and a buffer returned or leaked later wakes it.
            if (_drainingAfterDispose)
            {
                _idleReleaser.PauseIf(_nothingWaiting);
            }

            return;
        }

        if (ContextUnload.IsUnloading)
        {
            // What a live pool keeps stays until the pool is disposed or collected; its ticks would hold the context.
            ((IReclaimablePool)this).PauseForUnload();
            return;
        }

        if (!_releasesIdleMemory)
        {
            return;
        }

        // Pressure is checked at every tick, not only at collections: native memory grows without the GC seeing it.
        if (MemoryBudget.Current.IsUnderPressureFor(this))
        {
            ((IReclaimablePool)this).TrimUnderPressure();
            return;
        }

        _small.ReleaseIdle(now, delayInTicks);
        _medium.ReleaseIdle(now, delayInTicks);
        _large.ReleaseIdle(now, delayInTicks);
        _huge.ReleaseIdle(now, delayInTicks);

        // The global cap: whatever the delay says, a pool never keeps more than this idle (or, when live buffers pin
        // the rest, trims once and rests until it is used again).
        (long retained, long activity) = RetainedAndActivity();
        if (_retainedCap.IsDue(retained, activity))
        {
            try
            {
                Trim();
            }
            catch
            {
                _retainedCap.ForgetFailedTrim(activity);
                throw;
            }
        }

        // Pinned-array pages let go of leave the process only through an aggressive collection, a full blocking one:
        // it is asked for only after a whole tick without a rent or a return, so a loaded server never pays for it.
        if (activity == Interlocked.Exchange(ref _activityAtLastTick, activity))
        {
            _ = PinnedMemoryCollector.AfterRelease(_pages.Allocator);
        }
    }
}
