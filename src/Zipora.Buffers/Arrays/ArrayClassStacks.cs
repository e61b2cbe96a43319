using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>One stack per array size class, inline in the thread cache so the fast path follows no extra reference.</summary>
[InlineArray(ArraySizeClasses.Count)]
internal struct ArrayClassStacks
{
    private ArrayClassStack _element;
}
