using System;

namespace Zipora.Buffers.Tests;

/// <summary>The exception a <see cref="FaultInjectingAllocator"/> throws for <see cref="FaultKind.Throw"/>: a custom allocator's own bug.</summary>
public sealed class InjectedFaultException : Exception
{
    public InjectedFaultException()
    {
    }

    public InjectedFaultException(string message)
        : base(message)
    {
    }

    public InjectedFaultException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
