using System.Diagnostics.Tracing;

namespace Zipora.Buffers.Tests;

/// <summary>An <see cref="EventListener"/> of every event of the pools' event source (<c>Zipora-Buffers</c>, all levels).</summary>
public abstract class PoolEventListener : EventListener
{
    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Zipora-Buffers")
        {
            EnableEvents(eventSource, EventLevel.Verbose);
        }
    }
}
