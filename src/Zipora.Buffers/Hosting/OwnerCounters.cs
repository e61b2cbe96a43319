using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The rent counters of the owners <see cref="TieredMemoryPoolFactory"/> made views for, one per owner name, up to
/// <see cref="MaxOwners"/> names; the views of every later name count under <see cref="OtherOwners"/>.
/// </summary>
/// <remarks>
/// Kestrel and the other callers name a handful of owners, but the name is the caller's string: an app that made a
/// view per connection or per request with a name of its own would otherwise add a counter per name for the pool's
/// whole life (a leak), and as many series to the meter's owner tag (which exporters bill and slow down by).
/// </remarks>
internal sealed class OwnerCounters
{
    /// <summary>How many owner names are counted apart.</summary>
    public const int MaxOwners = 64;

    /// <summary>The name the rents of owners past <see cref="MaxOwners"/> are counted under.</summary>
    public const string OtherOwners = "(other owners)";

    private readonly ConcurrentDictionary<string, OwnerCounter> _byOwner = new(StringComparer.Ordinal);
    private readonly Lock _adding = new();
    private OwnerCounter? _others;

    /// <summary>The counter for <paramref name="owner"/>: its own while fewer than <see cref="MaxOwners"/> names are counted, else the shared one.</summary>
    public OwnerCounter CounterFor(string owner)
    {
        if (_byOwner.TryGetValue(owner, out OwnerCounter? counter))
        {
            return counter;
        }

        if (Volatile.Read(ref _others) is { } others)
        {
            // The names are full for good (none is ever removed): an app making a view per request past the cap must
            // not queue on the lock below for each one.
            return others;
        }

        // Views of new names are made rarely before the cap (Kestrel: once per I/O queue and listener), so a lock
        // keeps the cap exact.
        lock (_adding)
        {
            if (_byOwner.TryGetValue(owner, out counter))
            {
                return counter;
            }

            if (_byOwner.Count < MaxOwners)
            {
                counter = new OwnerCounter();
                _byOwner[owner] = counter;
                return counter;
            }

            if (_others is null)
            {
                Volatile.Write(ref _others, new OwnerCounter());
            }

            return _others;
        }
    }

    /// <summary>Rents by owner name, with <see cref="OtherOwners"/> once any name went past the cap.</summary>
    public Dictionary<string, long> Snapshot()
    {
        var rents = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (KeyValuePair<string, OwnerCounter> pair in _byOwner)
        {
            rents[pair.Key] = pair.Value.Rents;
        }

        if (Volatile.Read(ref _others) is { } others)
        {
            // An owner that named itself like the overflow shares its count (documented on RentsByOwner).
            rents[OtherOwners] = rents.GetValueOrDefault(OtherOwners) + others.Rents;
        }

        return rents;
    }
}
