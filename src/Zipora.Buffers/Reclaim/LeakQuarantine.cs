using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Holds blocks whose owners were garbage collected without dispose before they go back to their tier. A leaked
/// owner's Span can outlive the owner on some stack (the GC does not track native memory through a Span), so the
/// block is neither handed out, unmapped nor decommitted until a full idle delay after its finalizer ran.
/// </summary>
/// <remarks>
/// <para>
/// There is no way out before that: trims, caps, memory pressure and the pool's disposal all leave the quarantine
/// alone.
/// </para>
/// <para>
/// A block is stamped with the idle clock's tick, as a returned mapping is (<see cref="DeferredUnmaps"/>), and goes
/// back once the stamp has waited out the delay (<see cref="IdleClock.HasWaitedOutDelay"/>, which waits the tick
/// more that a stamp taken between two ticks needs, so the delay is never cut short). Not a timestamp: the finalizer
/// thread must not read the pool's <see cref="TimeProvider"/>, which may run due timers on the reading thread (a
/// fake clock's does), and so the pool's own tick, nested in this one's lock.
/// </para>
/// </remarks>
internal sealed class LeakQuarantine
{
    // A monitor, not a System.Threading.Lock: a contended Lock allocates its wait event on the managed heap, and the
    // finalizer thread takes it, where running out of managed memory must not throw (a monitor's contention allocates
    // nothing).
    private readonly object _lock = new();
    private readonly List<(NativeMemoryManager Buffer, INativeMemoryReleaser Tier, long FoundAt)> _held = [];
    private readonly IdleClock _clock;
    private long _reclaimed;
    private long _bytes;

    public LeakQuarantine(IdleClock clock)
    {
        _clock = clock;
    }

    /// <summary>Called after a block enters the quarantine, so a paused timer (a disposed pool's) ticks again.</summary>
    public Action? Waiting { get; set; }

    /// <summary>Whether nothing is held: no block is empty, so no bytes means no blocks.</summary>
    public bool IsEmpty => Bytes == 0;

    /// <summary>Buffers reclaimed from leaked owners so far.</summary>
    public long Reclaimed => Volatile.Read(ref _reclaimed);

    /// <summary>Bytes of the buffers held now.</summary>
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Called on the finalizer thread for a leaked block of <paramref name="tier"/>.</summary>
    /// <exception cref="OutOfMemoryException">No managed memory for the list: thrown before anything was held or counted.</exception>
    public void Add(NativeMemoryManager buffer, INativeMemoryReleaser tier, string tierName)
    {
        lock (_lock)
        {
            _held.Add((buffer, tier, _clock.Epoch));
            _bytes += buffer.Length;
        }

        Interlocked.Increment(ref _reclaimed);
        try
        {
            ZiporaBuffersEventSource.Log.BufferLeaked(tierName, buffer.Length);
            Waiting?.Invoke();
        }
        catch (OutOfMemoryException)
        {
            // The block is held and counted. Out of managed memory only its event, or the wake of a disposed pool's
            // paused timer, is lost (the next late return or leak wakes it).
            EventsOffTheCaller.CountLost();
        }
    }

    /// <summary>Returns to their tiers the blocks held for a full delay; called at every tick of the idle clock.</summary>
    /// <remarks>
    /// One block at a time, taken off the list under the lock and returned outside it (a tier's return path may take
    /// its own locks), allocating nothing: out of managed memory, no block can be off the list and not returned.
    /// </remarks>
    public void ReleaseDue()
    {
        int below = int.MaxValue;
        while (TakeDue(ref below, out NativeMemoryManager? buffer, out INativeMemoryReleaser? tier))
        {
            tier.Release(buffer);
        }
    }

    private bool TakeDue(ref int below, [NotNullWhen(true)] out NativeMemoryManager? buffer, [NotNullWhen(true)] out INativeMemoryReleaser? tier)
    {
        lock (_lock)
        {
            for (int i = Math.Min(below, _held.Count) - 1; i >= 0; i--)
            {
                if (_clock.HasWaitedOutDelay(_held[i].FoundAt))
                {
                    // The last block takes its slot (looked at already in this pass).
                    (buffer, tier, _) = _held.TakeAt(i);
                    _bytes -= buffer.Length;
                    below = i;
                    return true;
                }
            }
        }

        buffer = null;
        tier = null;
        return false;
    }
}
