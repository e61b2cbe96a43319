using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Holds blocks whose owners were garbage collected without dispose before they go back to their tier. A leaked
/// owner's Span can outlive the owner on some stack (the GC does not track native memory through a Span), so the
/// block waits out the idle delay instead of being handed to a new renter at once.
/// </summary>
internal sealed class LeakQuarantine
{
    private readonly Lock _lock = new();
    private readonly List<(NativeMemoryManager Buffer, INativeMemoryReleaser Tier, long Since)> _held = [];
    private readonly IdleClock _clock;
    private long _reclaimed;
    private bool _closed;

    public LeakQuarantine(IdleClock clock) => _clock = clock;

    /// <summary>Buffers reclaimed from leaked owners so far.</summary>
    public long Reclaimed => Volatile.Read(ref _reclaimed);

    /// <summary>Called on the finalizer thread for a leaked block of <paramref name="tier"/>.</summary>
    public void Add(NativeMemoryManager buffer, INativeMemoryReleaser tier, string tierName)
    {
        Interlocked.Increment(ref _reclaimed);
        ZiporaBuffersEventSource.Log.BufferLeaked(tierName, buffer.Length);
        lock (_lock)
        {
            if (!_closed)
            {
                _held.Add((buffer, tier, _clock.Epoch));
                return;
            }
        }

        // The pool is disposed: nobody will rent the block again, so it can be freed now.
        tier.Release(buffer);
    }

    /// <summary>Returns to their tiers the blocks held for at least <paramref name="delayInTicks"/> ticks (all of them with 0).</summary>
    public void ReleaseDue(long now, long delayInTicks)
    {
        List<(NativeMemoryManager Buffer, INativeMemoryReleaser Tier, long Since)>? due = null;
        lock (_lock)
        {
            for (int i = _held.Count - 1; i >= 0; i--)
            {
                if (now - _held[i].Since >= delayInTicks)
                {
                    (due ??= []).Add(_held[i]);
                    _held.RemoveAt(i);
                }
            }
        }

        // Outside the lock: a tier's return path may take its own locks.
        foreach ((NativeMemoryManager buffer, INativeMemoryReleaser tier, _) in due ?? [])
        {
            tier.Release(buffer);
        }
    }

    public void ReleaseAll() => ReleaseDue(long.MaxValue, 0);

    /// <summary>For a disposed pool: releases what is held and frees later leaks at once.</summary>
    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
        }

        ReleaseAll();
    }
}
