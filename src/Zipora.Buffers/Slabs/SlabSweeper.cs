using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Sorts out the pages of one slab at a trim, given its free blocks: drops the pages whose blocks are all free (one
/// advice per run of such pages), leaves alone the pages dropped before whose blocks have not been handed out since
/// (so they are neither advised nor counted again), and measures the free bytes that share a page with a live block:
/// committed, and beyond any trim's reach until that block returns.
/// </summary>
/// <remarks>The heap calls it under its lock, one slab at a time; the scratch arrays are reused from slab to slab.</remarks>
internal sealed class SlabSweeper(PageSource pages)
{
    private const byte Pinned = 0;
    private const byte StillDropped = 1;
    private const byte Droppable = 2;

    private NativeMemoryManager?[] _byBlock = [];
    private byte[] _pageStates = [];

    /// <summary>Sweeps <paramref name="slab"/>, whose free blocks are exactly <paramref name="free"/> (every other carved block is live or in quarantine).</summary>
    public SlabSweep Sweep(Slab slab, ReadOnlySpan<NativeMemoryManager> free)
    {
        if (_byBlock.Length < slab.Carved)
        {
            _byBlock = new NativeMemoryManager?[slab.BlockCapacity];
        }

        Span<NativeMemoryManager?> byBlock = _byBlock.AsSpan(0, slab.Carved);
        foreach (NativeMemoryManager block in free)
        {
            byBlock[(int)((block.Address - slab.Address) / slab.BlockSize)] = block;
        }

        try
        {
            return SweepPages(slab, byBlock);
        }
        finally
        {
            // Nothing in the pool may keep a block reachable once it is rented again, or a leaked one would never be finalized.
            byBlock.Clear();
        }
    }

    private SlabSweep SweepPages(Slab slab, Span<NativeMemoryManager?> byBlock)
    {
        long pageSize = (long)PageAllocator.PageSize;
        long carvedEnd = (long)slab.Carved * slab.BlockSize;
        int pageCount = (int)((carvedEnd + pageSize - 1) / pageSize);
        if (_pageStates.Length < pageCount)
        {
            _pageStates = new byte[(int)(slab.Length / (nuint)pageSize)];
        }

        // Judge every page before dropping any: a drop notes its blocks as unused, and a block that straddles two
        // pages must be judged used, for both pages, by what happened before this sweep.
        long fragmented = 0;
        for (int page = 0; page < pageCount; page++)
        {
            _pageStates[page] = Judge(slab, byBlock, page * pageSize, Math.Min((page + 1) * pageSize, carvedEnd), out long freeBytes);
            fragmented += _pageStates[page] == Pinned ? freeBytes : 0;
        }

        long dropped = 0;
        long advised = 0;
        for (int page = 0; page < pageCount; page++)
        {
            if (_pageStates[page] == StillDropped)
            {
                dropped += Math.Min((page + 1) * pageSize, carvedEnd) - (page * pageSize);
            }
            else if (_pageStates[page] == Droppable)
            {
                int end = page + 1;
                while (end < pageCount && _pageStates[end] == Droppable)
                {
                    end++;
                }

                if (TryDrop(slab, byBlock, page, end, carvedEnd))
                {
                    dropped += Math.Min(end * pageSize, carvedEnd) - (page * pageSize);
                    advised += (end - page) * pageSize;
                }

                page = end - 1;
            }
        }

        return new SlabSweep(dropped, fragmented, advised);
    }

    /// <summary>What page [<paramref name="start"/>, <paramref name="end"/>) of the slab is now; <paramref name="freeBytes"/> is what its free blocks cover.</summary>
    private static byte Judge(Slab slab, Span<NativeMemoryManager?> byBlock, long start, long end, out long freeBytes)
    {
        int blockSize = slab.BlockSize;
        bool live = false;
        bool used = false;
        freeBytes = 0;
        for (int index = (int)(start / blockSize); index <= (int)((end - 1) / blockSize); index++)
        {
            NativeMemoryManager? block = byBlock[index];
            if (block is null)
            {
                live = true;
                continue;
            }

            freeBytes += Math.Min((long)(index + 1) * blockSize, end) - Math.Max((long)index * blockSize, start);
            used |= block.UsedSincePagesDropped;
        }

        int page = (int)(start / (long)PageAllocator.PageSize);
        if (!live && !used && slab.IsPageDropped(page))
        {
            return StillDropped;
        }

        // Live, or free but used since it was last dropped: its pages may be committed again.
        slab.SetPageDropped(page, false);
        return live ? Pinned : Droppable;
    }

    /// <summary>
    /// Drops pages [<paramref name="first"/>, <paramref name="end"/>), every block on which is free. Only a drop the OS
    /// accepted is recorded: a refused one leaves the pages committed, and counted as retained.
    /// </summary>
    private bool TryDrop(Slab slab, Span<NativeMemoryManager?> byBlock, int first, int end, long carvedEnd)
    {
        long pageSize = (long)PageAllocator.PageSize;
        if (!pages.TryAdvise(slab.Address + (nint)(first * pageSize), (nuint)((end - first) * pageSize), pages.IdlePageAdvice, slab.Backing))
        {
            return false;
        }

        for (int page = first; page < end; page++)
        {
            slab.SetPageDropped(page, true);
        }

        int blockSize = slab.BlockSize;
        long lastByte = Math.Min(end * pageSize, carvedEnd) - 1;
        for (int index = (int)(first * pageSize / blockSize); index <= (int)(lastByte / blockSize); index++)
        {
            byBlock[index]!.NotePagesDropped();
        }

        return true;
    }
}
