using System;

namespace Zipora.Buffers.Tests;

/// <summary>An exception that cannot be described: its <see cref="ToString"/> throws (a user's exception type may).</summary>
internal sealed class UnprintableException : Exception
{
    public UnprintableException()
        : base("a clock failure that cannot be described")
    {
    }

    public UnprintableException(string message)
        : base(message)
    {
    }

    public UnprintableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public override string ToString() => throw new InvalidOperationException("this exception cannot be described");
}
