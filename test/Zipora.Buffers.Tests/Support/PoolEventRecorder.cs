using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics.Tracing;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>Records every event the pools' event source (<c>Zipora-Buffers</c>) writes while it lives, in order.</summary>
public sealed class PoolEventRecorder : PoolEventListener
{
    // Initialized before the base constructor runs, which may already call OnEventSourceCreated.
    private readonly ConcurrentQueue<(string Name, object?[] Payload)> _events = new();

    /// <summary>The payloads of the events named <paramref name="name"/>, in the order they were written.</summary>
    public IEnumerable<object?[]> Payloads(string name) => _events.Where(e => e.Name == name).Select(e => e.Payload);

    /// <summary>
    /// Waits up to <paramref name="timeout"/> until <paramref name="count"/> events named <paramref name="name"/> were
    /// written (background failures are written from a work item, after the failure), and returns whether they were.
    /// </summary>
    public bool WaitFor(string name, long count, TimeSpan timeout) =>
        SpinWait.SpinUntil(() => Payloads(name).LongCount() >= count, timeout);

    /// <summary>Each event's payload joined into one line, for searching the text of a report.</summary>
    public IEnumerable<string> Lines => _events.Select(e => string.Join(" | ", e.Payload.Select(value => value?.ToString())));

    protected override void OnEventWritten(EventWrittenEventArgs eventData) =>
        _events.Enqueue((eventData.EventName ?? string.Empty, eventData.Payload?.ToArray() ?? []));
}
