namespace Zipora.Buffers;

/// <summary>A run of pages cut into equal blocks for one size class of the small or medium tier.</summary>
internal sealed class Slab
{
    public Slab(int classIndex, nint address, nuint length, int blockSize, PageBacking backing)
    {
        ClassIndex = classIndex;
        Address = address;
        Length = length;
        BlockSize = blockSize;
        Backing = backing;
        BlockCapacity = (int)(length / (nuint)blockSize);
    }

    /// <summary>The size class whose blocks the slab is cut into.</summary>
    public int ClassIndex { get; }

    public nint Address { get; }

    public nuint Length { get; }

    public int BlockSize { get; }

    public PageBacking Backing { get; }

    public int BlockCapacity { get; }

    /// <summary>Blocks cut so far. Guarded by the heap's lock.</summary>
    public int Carved { get; set; }

    /// <summary>After the pool is disposed: blocks still rented. The slab is unmapped when it reaches zero. Guarded by the heap's lock.</summary>
    public int Outstanding { get; set; }

    public bool IsFull => Carved == BlockCapacity;

    public nint NextBlockAddress => Address + ((nint)Carved * BlockSize);
}
