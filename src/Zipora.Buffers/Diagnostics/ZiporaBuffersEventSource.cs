using System.Diagnostics.Tracing;

namespace Zipora.Buffers;

/// <summary>
/// Events of the pool, for <c>dotnet-trace</c>, PerfView or an <see cref="EventListener"/>: leaked buffers,
/// double disposes, backend fallbacks, refused unmaps, trims under memory pressure and background work that failed.
/// Every call site checks <see cref="EventSource.IsEnabled()"/>, so nothing is formatted or written when nobody listens.
/// <c>BackgroundWorkFailed</c> and <c>UnmapRefused</c>, which arise under the pools' locks, are written from a
/// thread-pool work item (see <see cref="EventsOffTheCaller"/>): a listener's code never runs inside the pool's work.
/// </summary>
[EventSource(Name = "Zipora-Buffers")]
internal sealed class ZiporaBuffersEventSource : EventSource
{
    public static readonly ZiporaBuffersEventSource Log = new();

    private ZiporaBuffersEventSource()
    {
    }

    /// <summary>A buffer was garbage collected without being disposed; its block was reclaimed.</summary>
    [Event(1, Level = EventLevel.Warning, Message = "A {0} buffer of {1} bytes was garbage collected without being disposed; the pool reclaimed its memory.")]
    public void BufferLeaked(string tier, int bytes)
    {
        if (IsEnabled())
        {
            WriteEvent(1, tier, bytes);
        }
    }

    /// <summary>A mapping fell back to a lesser backend (reported once per pool and kind).</summary>
    [Event(2, Level = EventLevel.Informational, Message = "Mapping fell back: {0}.")]
    public void BackendFallback(string step)
    {
        if (IsEnabled())
        {
            WriteEvent(2, step);
        }
    }

    /// <summary>A buffer was disposed twice (diagnostic mode), with both disposing stacks.</summary>
    [Event(3, Level = EventLevel.Error, Message = "A {0} buffer of {1} bytes was disposed twice: {2}")]
    public void DoubleDispose(string tier, int bytes, string stacks)
    {
        if (IsEnabled())
        {
            WriteEvent(3, tier, bytes, stacks);
        }
    }

    /// <summary>Diagnostic mode: an owner was garbage collected without dispose, with the stack that rented it.</summary>
    [Event(4, Level = EventLevel.Error, Message = "A {0} buffer of {1} bytes was garbage collected without being disposed. Rented at: {2}")]
    public void LeakDetected(string tier, int bytes, string rentedAt)
    {
        if (IsEnabled())
        {
            WriteEvent(4, tier, bytes, rentedAt);
        }
    }

    /// <summary>The OS refused to unmap a range (for example at <c>vm.max_map_count</c>); it stays mapped and counted, and is tried again at every tick.</summary>
    [Event(5, Level = EventLevel.Warning, Message = "The OS refused to unmap {0} bytes; they stay mapped and counted, and the pool tries again at its next tick.")]
    public void UnmapRefused(long bytes)
    {
        if (IsEnabled())
        {
            WriteEvent(5, bytes);
        }
    }

    /// <summary>Memory ran short (the cgroup near its limit, or the GC near its high-load threshold): the pool gave its idle memory back.</summary>
    [Event(6, Level = EventLevel.Warning, Message = "Memory runs short (cgroup usage {1} of {2} bytes; 0 outside a limited cgroup): pool {0} gives its idle memory back.")]
    public void MemoryPressureTrim(string pool, long usage, long limit)
    {
        if (IsEnabled())
        {
            WriteEvent(6, pool, usage, limit);
        }
    }

    /// <summary>Work a pool runs on its own (a tick of the idle clock, a trim under memory pressure) threw; it was skipped.</summary>
    [Event(7, Level = EventLevel.Error, Message = "The pools' background work ({0}) failed and was skipped; it runs again at its next turn. {1}")]
    public void BackgroundWorkFailed(string work, string error)
    {
        if (IsEnabled())
        {
            WriteEvent(7, work, error);
        }
    }
}
