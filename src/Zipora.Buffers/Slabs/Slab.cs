using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A run of pages cut into equal blocks for one size class of the small or medium tier.</summary>
internal sealed class Slab
{
    // One bit per page: set when a trim dropped the page (every block on it was free), cleared when a block on it is
    // found used again or is carved. Guarded by the heap's lock. Made with the slab (32 bytes for up to 64 pages): made
    // at its first drop, a trim of many slabs allocated one for each, where managed memory may be short.
    private readonly ulong[] _droppedPages;

    public Slab(int classIndex, nint address, nuint length, int blockSize, PageBacking backing)
    {
        ClassIndex = classIndex;
        Address = address;
        Length = length;
        BlockSize = blockSize;
        Backing = backing;
        BlockCapacity = (int)(length / (nuint)blockSize);
        _droppedPages = new ulong[(int)((length / PageAllocator.PageSize) + 63) >> 6];
    }

    /// <summary>The size class whose blocks the slab is cut into.</summary>
    public int ClassIndex { get; }

    public nint Address { get; }

    public nuint Length { get; }

    public int BlockSize { get; }

    public PageBacking Backing { get; }

    public int BlockCapacity { get; }

    /// <summary>
    /// The idle clock's tick when the slab was added to its heap: the earliest it may count as returned when it is let
    /// go of. Its mapping may be one let go of within its delay and taken again, which a stale Span of its old holder
    /// may still write to, while its class's last return may be older. Guarded by the heap's lock.
    /// </summary>
    public long MappedAt { get; set; }

    /// <summary>Blocks cut so far. Guarded by the heap's lock.</summary>
    public int Carved { get; set; }

    /// <summary>After the pool is disposed: blocks still rented. The slab is unmapped when it reaches zero. Guarded by the heap's lock.</summary>
    public int Outstanding { get; set; }

    /// <summary>
    /// Set when a trim has let go of the slab, every block of it free: no block is cut from it, none of its blocks is
    /// the tier's, and it waits for the trim to give it back to the OS outside the heap's lock (see
    /// <c>SlabHeap.GiveBackLetGoSlabs</c>), still mapped and counted as the heap's. Guarded by the heap's lock.
    /// </summary>
    public bool LetGo { get; set; }

    /// <summary>Once <see cref="LetGo"/>: the tick its blocks count as returned at, which dates its unmap. Guarded by the heap's lock.</summary>
    public long LetGoAt { get; set; }

    /// <summary>Once <see cref="LetGo"/>: the next slab let go of and not yet given back (a list through the slabs, which allocates nothing).</summary>
    public Slab? NextLetGo { get; set; }

    public bool IsFull => Carved == BlockCapacity;

    /// <summary>
    /// Bytes not yet cut into blocks: none once the slab is full, whose tail too short for a block lies on its last
    /// page and is judged with that page's blocks.
    /// </summary>
    public long UncarvedBytes => IsFull ? 0 : (long)Length - ((long)Carved * BlockSize);

    public nint NextBlockAddress => Address + ((nint)Carved * BlockSize);

    /// <summary>Whether page <paramref name="page"/> (counted from the slab's start) was dropped and not touched since, as far as the last trim knows.</summary>
    public bool IsPageDropped(int page) => (_droppedPages[page >> 6] & (1UL << page)) != 0;

    /// <summary>Records that page <paramref name="page"/> was dropped (or, with <see langword="false"/>, may be committed again).</summary>
    public void SetPageDropped(int page, bool dropped)
    {
        if (dropped)
        {
            _droppedPages[page >> 6] |= 1UL << page;
        }
        else
        {
            _droppedPages[page >> 6] &= ~(1UL << page);
        }
    }

    /// <summary>Forgets the drops of the pages under the bytes [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>): a block carved there will be written.</summary>
    public void ForgetDroppedPages(long offset, int length)
    {
        long pageSize = (long)PageAllocator.PageSize;
        for (long page = offset / pageSize; page <= (offset + length - 1) / pageSize; page++)
        {
            SetPageDropped((int)page, false);
        }
    }
}
