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
    /// Waits up to <paramref name="timeout"/> until <paramref name="count"/> events named <paramref name="name"/> whose
    /// payload mentions <paramref name="mention"/> were written, and returns whether they were. Background failures are
    /// written from a work item, after the failure: an event an earlier test caused may arrive while this recorder
    /// lives, so a test counts only the events that name what it did (its clock's <c>Signature</c>, say).
    /// </summary>
    public bool WaitFor(string name, string mention, long count, TimeSpan timeout) =>
        SpinWait.SpinUntil(() => Mentioning(name, mention).LongCount() >= count, timeout);

    /// <summary>The payloads of the events named <paramref name="name"/> with a value containing <paramref name="mention"/>.</summary>
    public IEnumerable<object?[]> Mentioning(string name, string mention) =>
        Payloads(name).Where(payload => payload.Any(value => value?.ToString()?.Contains(mention, StringComparison.Ordinal) == true));

    /// <summary>Each event's payload joined into one line, for searching the text of a report.</summary>
    public IEnumerable<string> Lines => _events.Select(e => string.Join(" | ", e.Payload.Select(value => value?.ToString())));

    protected override void OnEventWritten(EventWrittenEventArgs eventData) =>
        _events.Enqueue((eventData.EventName ?? string.Empty, eventData.Payload?.ToArray() ?? []));
}
