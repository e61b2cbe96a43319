using System;
using System.Collections.Generic;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A slab heap's trims: letting go of the slabs whose blocks are all free, dropping the pages of the others.</summary>
internal sealed partial class SlabHeap
{
    /// <summary>
    /// The most free blocks (and slabs) a trim's tables, and a cached slab tier's trim lists, keep room for between
    /// trims: what a trim at the GC heap limit takes out and sorts without allocating. About 28 bytes a block over the
    /// four tables and lists; each table stays under the large object heap's threshold. A trim of more allocates.
    /// </summary>
    internal const int TrimBlocksKept = 1024;

    // The room a trim's tables are made with: 1.5 KB for the blocks, 0.3 KB for the slabs.
    private const int ScratchBlocksMade = 128;
    private const int ScratchSlabsMade = 32;

    /// <summary>
    /// Gives idle memory back, given every free block of the chosen classes (the caller keeps them from being handed
    /// out meanwhile): lets go of each slab whose blocks are all free, and drops the pages of the other slabs that hold
    /// only free blocks (MADV_DONTNEED: resident memory falls now, the next use refaults zeroed pages). A page dropped
    /// before and not used since is left alone; a page that shares a live block is measured as fragmentation.
    /// </summary>
    /// <param name="free">Every free block of the chosen classes.</param>
    /// <param name="returnedAtByClass">
    /// Per size class, the tick of the idle clock by which its free blocks were all returned: a slab is unmapped at
    /// once only when that was a full delay ago, otherwise it is unmapped when the delay has passed.
    /// </param>
    /// <param name="classes">The classes whose free blocks are all in <paramref name="free"/>; <see langword="null"/> for all.</param>
    /// <param name="rentedBytesByClass">Per class, the bytes the tier has rented so far (see <see cref="NotRetained"/>).</param>
    /// <param name="kept">
    /// Empty, with room for every block of <paramref name="free"/>: receives the free blocks that are still the tier's,
    /// to go back to the caches. Also when this throws (out of managed memory): every block not let go of with its slab
    /// by then is in it, so a failed trim loses none.
    /// </param>
    public void TrimFree(List<NativeMemoryManager> free, long[] returnedAtByClass, bool[]? classes, long[] rentedBytesByClass, List<NativeMemoryManager> kept)
    {
        lock (_lock)
        {
            if (_disposing)
            {
                kept.AddRange(free);
                return;
            }

            // Everything this needs is allocated before the first slab is let go of: until then a failure hands back
            // every block as it came. Up to TrimBlocksKept free blocks and slabs, nothing is: the tables are the
            // heap's, kept from trim to trim, so a trim at the GC heap limit gives its slabs back.
            NativeMemoryManager[] bySlab;
            Span<int> firstBySlab;
            try
            {
                bySlab = GroupBySlabUnsynchronized(free, out firstBySlab);
                RemoveDuplicates(bySlab, firstBySlab);
            }
            catch
            {
                kept.AddRange(free);
                throw;
            }

            long[] figures = _spareFigures;
            Array.Copy(_figures, figures, figures.Length);
            for (int classIndex = 0; classIndex < _classCount; classIndex++)
            {
                if (classes?[classIndex] ?? true)
                {
                    figures[classIndex] = 0;
                    figures[_classCount + classIndex] = 0;
                    figures[(2 * _classCount) + classIndex] = rentedBytesByClass[classIndex];
                }
            }

            // From the last slab down, so taking one out does not move those still to come. The slabs from
            // `handled` up are done with: their blocks let go of or kept.
            int handled = _slabs.Count;
            long advised = 0;
            try
            {
                for (int index = _slabs.Count - 1; index >= 0; index--)
                {
                    Slab slab = _slabs[index];
                    var blocks = new ReadOnlySpan<NativeMemoryManager>(bySlab, firstBySlab[index], firstBySlab[index + 1] - firstBySlab[index]);
                    if (blocks.Length == slab.Carved)
                    {
                        // Let go of first: if that fails, the slab and its blocks are as they were.
                        UnmapUnsynchronized(index, returnedAtByClass[slab.ClassIndex]);
                        foreach (NativeMemoryManager buffer in blocks)
                        {
                            buffer.MarkReleased();
                        }

                        handled = index;
                    }
                    else
                    {
                        kept.AddRange(blocks);
                        handled = index;
                        if (classes?[slab.ClassIndex] ?? true)
                        {
                            SlabSweep sweep = _sweeper.Sweep(slab, blocks);
                            figures[slab.ClassIndex] += sweep.Dropped;
                            figures[_classCount + slab.ClassIndex] += sweep.Fragmented;
                            advised += sweep.Advised;
                        }
                    }
                }

                _spareFigures = _figures;
                Volatile.Write(ref _figures, figures);
            }
            catch
            {
                kept.AddRange(bySlab.AsSpan(0, firstBySlab[handled]));
                throw;
            }
            finally
            {
                Interlocked.Add(ref _decommittedBytes, advised);

                // Nothing in the pool may keep a block reachable where it no longer counts it.
                Array.Clear(bySlab, 0, firstBySlab[^1]);
            }
        }

        _unmaps.WakeIfWaiting();
    }

    /// <summary>
    /// Keeps one of each block in every slab's run of <paramref name="bySlab"/>, moving the runs down and
    /// <paramref name="firstBySlab"/> with them. A block disposed twice under ReuseOwners can sit in the caches twice:
    /// counted once, it cannot make a slab with a block still rented look free (unmapping a live block), and only one
    /// copy goes back. Each run is sorted by address in place, so copies lie side by side: a set of every block cost a
    /// trim about 28 bytes of managed memory per free block, which a trim under memory pressure can least afford.
    /// </summary>
    internal static void RemoveDuplicates(NativeMemoryManager[] bySlab, Span<int> firstBySlab)
    {
        int end = firstBySlab[^1];
        int written = 0;
        for (int index = 0; index + 1 < firstBySlab.Length; index++)
        {
            Span<NativeMemoryManager> run = bySlab.AsSpan(firstBySlab[index], firstBySlab[index + 1] - firstBySlab[index]);
            firstBySlab[index] = written;
            run.Sort(static (first, second) => first.Address.CompareTo(second.Address));
            int sameAddressFrom = written;
            for (int i = 0; i < run.Length; i++)
            {
                // Read before anything is written over it: the run lies at or above where it is written.
                NativeMemoryManager block = run[i];
                if (written > 0 && bySlab[written - 1].Address != block.Address)
                {
                    sameAddressFrom = written;
                }

                if (Array.IndexOf(bySlab, block, sameAddressFrom, written - sameAddressFrom) < 0)
                {
                    bySlab[written++] = block;
                }
            }
        }

        firstBySlab[^1] = written;

        // Nothing in the pool may keep a block reachable where it no longer counts it.
        Array.Clear(bySlab, written, end - written);
    }

    /// <summary>
    /// The free blocks ordered by slab: those of slab <c>i</c> are at [<paramref name="firstBySlab"/>[i],
    /// <paramref name="firstBySlab"/>[i + 1]) of the result (a counting sort: one binary search per block). The tables
    /// are the heap's scratch (see <see cref="Scratch{T}"/>); the caller clears the result's blocks once done.
    /// </summary>
    private NativeMemoryManager[] GroupBySlabUnsynchronized(List<NativeMemoryManager> free, out Span<int> firstBySlab)
    {
        Span<int> slabOf = Scratch(ref _slabOfScratch, free.Count).AsSpan(0, free.Count);
        firstBySlab = Scratch(ref _firstBySlabScratch, _slabs.Count + 1).AsSpan(0, _slabs.Count + 1);
        Span<int> next = Scratch(ref _nextScratch, _slabs.Count + 1).AsSpan(0, _slabs.Count + 1);
        NativeMemoryManager[] bySlab = Scratch(ref _bySlabScratch, free.Count);
        firstBySlab.Clear();
        for (int i = 0; i < free.Count; i++)
        {
            slabOf[i] = FindSlabUnsynchronized(free[i].Address);
            firstBySlab[slabOf[i] + 1]++;
        }

        for (int index = 0; index < _slabs.Count; index++)
        {
            firstBySlab[index + 1] += firstBySlab[index];
        }

        firstBySlab.CopyTo(next);
        for (int i = 0; i < free.Count; i++)
        {
            bySlab[next[slabOf[i]]++] = free[i];
        }

        return bySlab;
    }

    /// <summary>
    /// A table of at least <paramref name="length"/> entries: the heap's own (<paramref name="kept"/>), grown if need
    /// be, up to <see cref="TrimBlocksKept"/>; past that one made for this trim alone, so a heap that once trimmed a
    /// million free blocks does not hold tables for them (28 bytes a block) for good.
    /// </summary>
    private static T[] Scratch<T>(ref T[] kept, int length)
    {
        if (kept.Length >= length)
        {
            return kept;
        }

        if (length > TrimBlocksKept)
        {
            return new T[length];
        }

        kept = new T[Math.Min(TrimBlocksKept, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)length))];
        return kept;
    }
}
