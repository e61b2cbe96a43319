using System;
using System.Diagnostics;
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

        // A full slab's tail too short for a block lies on its last page and goes with it; a slab still being carved
        // keeps its uncarved space for blocks to come (retained, as it always was).
        long end = slab.IsFull ? (long)slab.Length : carvedEnd;
        int pageCount = (int)((end + pageSize - 1) / pageSize);
        if (_pageStates.Length < pageCount)
        {
            _pageStates = new byte[(int)(slab.Length / (nuint)pageSize)];
        }

        // Judge every page before dropping any: a drop notes its blocks as unused, and a block that straddles two
        // pages must be judged used, for both pages, by what happened before this sweep.
        long fragmented = 0;
        for (int page = 0; page < pageCount; page++)
        {
            _pageStates[page] = Judge(slab, byBlock, page * pageSize, Math.Min((page + 1) * pageSize, end), carvedEnd, out long freeBytes);
            fragmented += _pageStates[page] == Pinned ? freeBytes : 0;
        }

        long dropped = 0;
        long advised = 0;
        for (int page = 0; page < pageCount; page++)
        {
            if (_pageStates[page] == StillDropped)
            {
                dropped += Math.Min((page + 1) * pageSize, end) - (page * pageSize);
            }
            else if (_pageStates[page] == Droppable)
            {
                int runEnd = page + 1;
                while (runEnd < pageCount && _pageStates[runEnd] == Droppable)
                {
                    runEnd++;
                }

                if (TryDrop(slab, byBlock, page, runEnd, carvedEnd))
                {
                    dropped += Math.Min(runEnd * pageSize, end) - (page * pageSize);
                    advised += (runEnd - page) * pageSize;
                }

                page = runEnd - 1;
            }
        }

        return new SlabSweep(dropped, fragmented, advised);
    }

    /// <summary>
    /// What page [<paramref name="start"/>, <paramref name="end"/>) of the slab is now (its blocks end at
    /// <paramref name="carvedEnd"/>); <paramref name="freeBytes"/> is what live blocks leave of it.
    /// </summary>
    private static byte Judge(Slab slab, Span<NativeMemoryManager?> byBlock, long start, long end, long carvedEnd, out long freeBytes)
    {
        int blockSize = slab.BlockSize;
        bool live = false;
        bool used = false;
        freeBytes = end - start;
        for (long index = start / blockSize; index * blockSize < Math.Min(end, carvedEnd); index++)
        {
            NativeMemoryManager? block = byBlock[(int)index];
            if (block is null)
            {
                live = true;
                freeBytes -= Math.Min((index + 1) * blockSize, end) - Math.Max(index * blockSize, start);
                continue;
            }

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
        int blockSize = slab.BlockSize;
        int firstBlock = (int)(first * pageSize / blockSize);
        int lastBlock = (int)((Math.Min(end * pageSize, carvedEnd) - 1) / blockSize);

        // The one thing a drop must never do is zero a live block: checked here again, whatever the judging said.
        for (int index = firstBlock; index <= lastBlock; index++)
        {
            if (byBlock[index] is null)
            {
                Debug.Fail($"page run {first}..{end} of a slab at 0x{slab.Address:x} holds live block {index}");
                return false;
            }
        }

        if (!pages.TryAdvise(slab.Address + (nint)(first * pageSize), (nuint)((end - first) * pageSize), pages.IdlePageAdvice, slab.Backing))
        {
            return false;
        }

        for (int page = first; page < end; page++)
        {
            slab.SetPageDropped(page, true);
        }

        for (int index = firstBlock; index <= lastBlock; index++)
        {
            byBlock[index]!.NotePagesDropped();
        }

        return true;
    }
}
