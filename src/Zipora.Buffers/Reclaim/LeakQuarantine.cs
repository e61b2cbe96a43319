using System;
using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Holds blocks whose owners were garbage collected without dispose before they go back to their tier. A leaked
/// owner's Span can outlive the owner on some stack (the GC does not track native memory through a Span), so the
/// block is neither handed out, unmapped nor decommitted until a full idle delay after its finalizer ran.
/// </summary>
/// <remarks>
/// There is no way out before that: trims, caps, memory pressure and the pool's disposal all leave the quarantine
/// alone. The delay is measured on the pool's <see cref="TimeProvider"/> from the moment the finalizer ran, not in
/// ticks of the idle clock, so it is never cut short by where between two ticks the leak was found.
/// </remarks>
internal sealed class LeakQuarantine
{
    private readonly Lock _lock = new();
    private readonly List<(NativeMemoryManager Buffer, INativeMemoryReleaser Tier, long Since)> _held = [];
    private readonly TimeProvider _time;
    private readonly TimeSpan _delay;
    private long _reclaimed;
    private long _bytes;

    public LeakQuarantine(TimeProvider time, TimeSpan delay)
    {
        _time = time;
        _delay = delay;
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
    public void Add(NativeMemoryManager buffer, INativeMemoryReleaser tier, string tierName)
    {
        Interlocked.Increment(ref _reclaimed);
        ZiporaBuffersEventSource.Log.BufferLeaked(tierName, buffer.Length);
        lock (_lock)
        {
            _held.Add((buffer, tier, _time.GetTimestamp()));
            _bytes += buffer.Length;
        }

        Waiting?.Invoke();
    }

    /// <summary>Returns to their tiers the blocks held for a full delay; called at every tick of the idle clock.</summary>
    public void ReleaseDue()
    {
        List<(NativeMemoryManager Buffer, INativeMemoryReleaser Tier, long Since)>? due = null;
        lock (_lock)
        {
            for (int i = _held.Count - 1; i >= 0; i--)
            {
                if (_time.GetElapsedTime(_held[i].Since) >= _delay)
                {
                    (due ??= []).Add(_held[i]);
                    _bytes -= _held[i].Buffer.Length;
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
}
