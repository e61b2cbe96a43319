using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>One stack per medium size class, inline in the thread cache so the fast path follows no extra reference.</summary>
[InlineArray(MaxClasses)]
internal struct MediumClassStacks
{
    /// <summary>Medium classes are powers of two from 1 KB to the mmap threshold (at most 1 MB): at most 11.</summary>
    public const int MaxClasses = 11;

    private MediumClassStack _element;
}
