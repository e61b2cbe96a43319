using System.Collections.Generic;

namespace Zipora.Buffers;

/// <summary>Orders slabs by start address.</summary>
internal sealed class SlabAddressComparer : IComparer<Slab>
{
    public static readonly SlabAddressComparer Instance = new();

    public int Compare(Slab? x, Slab? y) => (x?.Address ?? 0).CompareTo(y?.Address ?? 0);
}
