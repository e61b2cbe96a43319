using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>One stack per size class, inline in the thread cache so the fast path follows no extra reference.</summary>
[InlineArray(MaxClasses)]
internal struct ClassStacks
{
    /// <summary>
    /// The most classes a slab tier has: the small tier's 20 (8 of 16 bytes to 128, then 4 per doubling to 1 KB);
    /// the medium tier's powers of two from 1 KB to the mmap threshold (at most 1 MB) are at most 11.
    /// </summary>
    public const int MaxClasses = 20;

    private ClassStack _element;
}
