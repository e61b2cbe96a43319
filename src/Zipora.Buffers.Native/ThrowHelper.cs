using System;
using System.Diagnostics.CodeAnalysis;

namespace Zipora.Buffers.Native;

/// <summary>Throws for the uncommon paths, kept out of line so the hot callers stay small enough to inline.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowObjectDisposed(object instance) =>
        throw new ObjectDisposedException(instance.GetType().FullName, "The buffer was returned to its pool; its memory must not be used any more.");

    [DoesNotReturn]
    public static void ThrowArgumentOutOfRange(string name) => throw new ArgumentOutOfRangeException(name);

    [DoesNotReturn]
    public static void ThrowArgumentNull(string name) => throw new ArgumentNullException(name);
}
