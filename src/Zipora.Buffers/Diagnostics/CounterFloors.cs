using System.Collections.Generic;

namespace Zipora.Buffers;

/// <summary>
/// The highest value each of one pool's counter series has reported to the meter, so that a counter never reports
/// less than it did before.
/// </summary>
/// <remarks>
/// The statistics are summed from per-thread counts without stopping the threads, so while buffers move between threads
/// a read can show a count one or two below the read before it (a rent a thread's slot served is counted, then
/// uncounted for a moment while a region displaces another). A snapshot may be that close; an observable counter may
/// not: exporters read a fall as a reset of the series, and a rate computed over it jumps by the whole count.
/// </remarks>
internal sealed class CounterFloors
{
    private readonly Dictionary<(string Instrument, string Series), long> _highest = [];

    /// <summary><paramref name="value"/>, or the most <paramref name="instrument"/> reported for <paramref name="series"/> if that was more.</summary>
    public long NeverBelowTheLast(string instrument, string series, long value)
    {
        lock (_highest)
        {
            if (_highest.TryGetValue((instrument, series), out long highest) && highest >= value)
            {
                return highest;
            }

            _highest[(instrument, series)] = value;
            return value;
        }
    }
}
