using System;
using System.Buffers;

namespace Zipora.Buffers;

/// <summary>Copying a segmented buffer's contents into one array.</summary>
internal static class SequenceArrays
{
    /// <summary>The bytes of <paramref name="contents"/> in a new array.</summary>
    /// <exception cref="InvalidOperationException">They are more than an array can hold.</exception>
    public static byte[] ToArrayChecked(this ReadOnlySequence<byte> contents)
    {
        if (contents.Length > Array.MaxLength)
        {
            SegmentThrowHelper.ThrowTooLongForArray(contents.Length);
        }

        if (contents.IsEmpty)
        {
            return [];
        }

        byte[] array = GC.AllocateUninitializedArray<byte>((int)contents.Length);
        contents.CopyTo(array);
        return array;
    }
}
