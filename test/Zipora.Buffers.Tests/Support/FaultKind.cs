using System;

namespace Zipora.Buffers.Tests;

/// <summary>How an injected fault fails its call.</summary>
public enum FaultKind
{
    /// <summary>The call returns <see langword="false"/>, as the OS refuses.</summary>
    Refuse,

    /// <summary>The call throws <see cref="OutOfMemoryException"/> before doing anything, as any call can at the GC heap limit.</summary>
    OutOfMemory,

    /// <summary>The call throws <see cref="InjectedFaultException"/> before doing anything: a custom allocator's bug.</summary>
    Throw,
}
