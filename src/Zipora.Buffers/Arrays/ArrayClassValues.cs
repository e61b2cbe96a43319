using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>One value per array size class, stored inline in the thread cache so the fast path follows no extra reference.</summary>
/// <typeparam name="T">The value kept per class.</typeparam>
[InlineArray(ArraySizeClasses.Count)]
internal struct ArrayClassValues<T>
{
    private T _element;
}
