using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>One value per medium size class, stored inline in its owner so the fast path needs no extra object or array header.</summary>
/// <typeparam name="T">The value kept per class.</typeparam>
[InlineArray(MaxClasses)]
internal struct PerClass<T>
{
    /// <summary>Medium classes are powers of two from 1 KB to the mmap threshold (at most 1 MB): at most 11.</summary>
    public const int MaxClasses = 11;

    private T _element;
}
