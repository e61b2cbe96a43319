using System;
using System.Diagnostics.CodeAnalysis;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>A slab heap's trims: letting go of the slabs whose blocks are all free, dropping the pages of the others.</summary>
internal sealed partial class SlabHeap
{
    // Orders a class's claimed free blocks by address, so each slab's lie side by side. Made with the heap, not in a
    // static: a type's statics are made at its first use, which may be a trim at the GC heap limit, where a type
    // initializer that fails leaves the type broken for good (every later trim would throw).
    private readonly Comparison<NativeMemoryManager> _byAddress = static (first, second) => first.Address.CompareTo(second.Address);

    /// <summary>
    /// For tests alone (null otherwise): called before a trim handles each slab, to fail the trim there, partway, as an
    /// allocation that runs out of managed memory can (a sweeper's first tables, a block listed twice growing its depot).
    /// </summary>
    internal Action? BeforeEachSlabTrimmed { get; set; }

    /// <summary>For tests alone (null otherwise): called as a trim is about to take the heap's lock, its blocks sorted.</summary>
    internal Action? BeforeTrimTakesTheLock { get; set; }

    // Set while a trim sweeps the slabs under the lock: only the trimming thread can see it (others wait for the lock),
    // re-entering through the page allocator, the user's, which drops the pages (see Carve).
    private bool _sweeping;

    /// <summary>
    /// Gives idle memory back, given the depots of the chosen classes with every free block of those classes claimed
    /// (see <see cref="SizeClassDepot{T}.Claim"/>: nobody else takes them meanwhile): lets go of each slab whose blocks
    /// are all free, and drops the pages of the other slabs that hold only free blocks (MADV_DONTNEED: resident memory
    /// falls now, the next use refaults zeroed pages). A page dropped before and not used since is left alone; a page
    /// that shares a live block is measured as fragmentation.
    /// </summary>
    /// <remarks>
    /// Works in the depots' own arrays, sorted in place: a trim of any number of free blocks allocates no table of
    /// them, so a trim under memory pressure at the GC heap limit still lets go (TrimAllocationBoundTests). A block let
    /// go of with its slab, or a second copy of one, is nulled in the claim; every block still claimed when this
    /// returns or throws is the tier's, and goes back when the claim ends. The slabs let go of are given back to the OS
    /// by <see cref="GiveBackLetGoSlabs"/>, which the caller calls next, whether this returned or threw.
    /// </remarks>
    /// <param name="depots">Per class, its depot; those of the chosen classes are claimed.</param>
    /// <param name="returnedAtByClass">
    /// Per size class, the tick of the idle clock by which its free blocks were all returned: a slab is unmapped at
    /// once only when that was a full delay ago, otherwise it is unmapped when the delay has passed.
    /// </param>
    /// <param name="classes">The classes whose free blocks are all claimed; <see langword="null"/> for all.</param>
    /// <param name="rentedBytesByClass">Per class, the bytes the tier has rented so far (see <see cref="NotRetained"/>).</param>
    public void TrimFree(SizeClassDepot<NativeMemoryManager>[] depots, long[] returnedAtByClass, bool[]? classes, long[] rentedBytesByClass)
    {
        // Sorted before the lock is taken: the claimed blocks are this trim's alone, so nothing waits for the sort, which
        // is most of a large trim's time. Sorted under the lock, a trim of a million cached 64-byte blocks held every rent
        // that had to carve a block, of any class, and every statistics read, for 151-155 ms of its 158-162
        // (perf/RESULTS.md, section 48).
        for (int classIndex = 0; classIndex < _classCount; classIndex++)
        {
            if (classes?[classIndex] ?? true)
            {
                depots[classIndex].Claimed.Sort(_byAddress);
            }
        }

        BeforeTrimTakesTheLock?.Invoke();
        lock (_lock)
        {
            if (_disposing)
            {
                return;
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

            long advised = 0;
            _sweeping = true;
            try
            {
                for (int classIndex = 0; classIndex < _classCount; classIndex++)
                {
                    if (classes?[classIndex] ?? true)
                    {
                        TrimClassUnsynchronized(classIndex, depots[classIndex], returnedAtByClass[classIndex], figures, ref advised);
                    }
                }

                _spareFigures = _figures;
                Volatile.Write(ref _figures, figures);
            }
            finally
            {
                _sweeping = false;
                Interlocked.Add(ref _decommittedBytes, advised);
            }
        }

        // Nothing was listed to unmap here: the slabs let go of are listed by GiveBackLetGoSlabs, which wakes the timer.
    }

    /// <summary>
    /// Trims one class: its slabs walked in address order beside its claimed free blocks, sorted by address before the
    /// lock was taken, each slab with the run of blocks that lie in it. The caller holds the lock.
    /// </summary>
    private void TrimClassUnsynchronized(int classIndex, SizeClassDepot<NativeMemoryManager> depot, long returnedAt, long[] figures, ref long advised)
    {
        Span<NativeMemoryManager> claimed = depot.Claimed;
        int next = 0;
        int index = 0;
        while (index < _slabs.Count)
        {
            Slab slab = _slabs[index];
            if (slab.ClassIndex != classIndex || slab.LetGo)
            {
                index++;
                continue;
            }

            BeforeEachSlabTrimmed?.Invoke();
            if (next < claimed.Length && claimed[next].Address < slab.Address)
            {
                ThrowOutsideEverySlab(claimed[next].Address);
            }

            int end = next;
            nint slabEnd = slab.Address + (nint)slab.Length;
            while (end < claimed.Length && claimed[end].Address < slabEnd)
            {
                end++;
            }

            Span<NativeMemoryManager> run = claimed[next..end];
            next = end;
            int unique = KeepOneOfEach(run);
            if (unique < run.Length)
            {
                depot.ForgetClaimed(run.Length - unique);
            }

            run = run[..unique];
            if (unique == slab.Carved)
            {
                // Kept in the list until it is given back, after the lock (see GiveBackLetGoSlabs).
                LetGoOfFreeSlabUnsynchronized(index, run, depot, returnedAt);
                index++;
                continue;
            }

            // A slab with no free block is swept too: the tail of a full slab, too short for a block, is fragmented.
            SlabSweep sweep = _sweeper.Sweep(slab, run);
            figures[classIndex] += sweep.Dropped;
            figures[_classCount + classIndex] += sweep.Fragmented;
            advised += sweep.Advised;
            index++;
        }

        if (next < claimed.Length)
        {
            ThrowOutsideEverySlab(claimed[next].Address);
        }
    }

    /// <summary>
    /// Lets go of the slab at <paramref name="index"/>, every block of which is in <paramref name="blocks"/> (claimed
    /// from <paramref name="depot"/>): taken out of the tier first, so that if that fails the slab and its blocks are as
    /// they were. It is given back to the OS after the lock (<see cref="GiveBackLetGoSlabs"/>).
    /// </summary>
    private void LetGoOfFreeSlabUnsynchronized(int index, Span<NativeMemoryManager> blocks, SizeClassDepot<NativeMemoryManager> depot, long returnedAt)
    {
        // Their places counted as let go of before the slab's room is given up (in LetGoUnsynchronized): a rent between
        // the two must not find room the claim still takes.
        depot.ForgetClaimed(blocks.Length);
        try
        {
            LetGoUnsynchronized(index, returnedAt);
        }
        catch
        {
            depot.ForgetClaimed(-blocks.Length);
            throw;
        }

        foreach (NativeMemoryManager buffer in blocks)
        {
            buffer.MarkReleased();
        }

        // Nothing in the pool may keep a block reachable where it no longer counts it.
        blocks.Clear();
    }

    /// <summary>
    /// Keeps one of each block in <paramref name="run"/> (sorted by address), moving those kept down and nulling the
    /// rest; returns how many are kept. A block disposed twice under ReuseOwners can sit in the caches twice: counted
    /// once, it cannot make a slab with a block still rented look free (unmapping a live block), and only one copy goes
    /// back. Two managers of one address are two blocks as far as the trim can tell: neither is dropped for the other.
    /// </summary>
    internal static int KeepOneOfEach(Span<NativeMemoryManager> run)
    {
        int written = 0;
        int sameAddressFrom = 0;
        for (int i = 0; i < run.Length; i++)
        {
            // Read before anything is written over it: written never passes i.
            NativeMemoryManager block = run[i];
            if (written > 0 && run[written - 1].Address != block.Address)
            {
                sameAddressFrom = written;
            }

            if (!HoldsAlready(run[sameAddressFrom..written], block))
            {
                run[written++] = block;
            }
        }

        run[written..].Clear();
        return written;
    }

    private static bool HoldsAlready(ReadOnlySpan<NativeMemoryManager> blocks, NativeMemoryManager block)
    {
        foreach (NativeMemoryManager held in blocks)
        {
            if (ReferenceEquals(held, block))
            {
                return true;
            }
        }

        return false;
    }

    [DoesNotReturn]
    private static void ThrowOutsideEverySlab(nint address) =>
        throw new InvalidOperationException($"Block 0x{address:x} belongs to no slab of its class in this pool.");
}
