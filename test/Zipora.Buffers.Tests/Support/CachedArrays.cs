using System;

namespace Zipora.Buffers.Tests;

/// <summary>Arrays cached in a <see cref="TieredArrayPool"/>, for the tests of what its trims and ticks drop.</summary>
internal static class CachedArrays
{
    /// <summary>Rents <paramref name="count"/> arrays of <paramref name="length"/> and returns them all: the pool then caches exactly those.</summary>
    public static void Fill(TieredArrayPool pool, int count, int length)
    {
        var arrays = new byte[count][];
        for (int i = 0; i < arrays.Length; i++)
        {
            arrays[i] = pool.Rent(length);
        }

        Array.ForEach(arrays, array => pool.Return(array));
        Assert.Equal((long)count * length, pool.GetStatistics().BytesRetained);
    }
}
