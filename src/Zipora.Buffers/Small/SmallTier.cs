using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Requests of 1 to 1023 bytes: a pool shared by all threads, sharded per core, carved from 64 KB slabs. Classes
/// step by 16 bytes up to 128 (so every block is 16-byte aligned) and by a quarter of the doubling above.
/// </summary>
internal sealed class SmallTier : SlabTier, INativeMemoryReleaser
{
    /// <summary>The largest request this tier serves.</summary>
    public const int MaxSize = 1023;

    private const int FineStep = 16;
    private const int FineLimit = 128;
    private const int FineLimitLog2 = 7;
    private const int FineClassCount = FineLimit / FineStep;
    private const int ClassCount = FineClassCount + 12;
    private const int SlabBytes = 64 * 1024;
    private const int MaxStripes = 64;

    private readonly SmallStripe[] _stripes;
    private readonly int _stripeMask;
    private readonly SlabHeap _heap;
    private readonly LeakQuarantine _quarantine;
    private readonly HighWaterSampler _highWater = new(ClassCount);
    private volatile bool _disposed;

    public SmallTier(PageSource pages, IdleClock clock, DeferredUnmaps unmaps, LeakQuarantine quarantine)
        : base(clock)
    {
        _quarantine = quarantine;
        int stripeCount = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(Environment.ProcessorCount, 1, MaxStripes));
        _stripes = new SmallStripe[stripeCount];
        for (int i = 0; i < stripeCount; i++)
        {
            _stripes[i] = new SmallStripe(ClassCount);
        }

        _stripeMask = stripeCount - 1;
        _heap = new SlabHeap(pages, unmaps, clock, this, ClassCount);
    }

    /// <summary>The block size of the class that serves <paramref name="size"/> (1 to 1023).</summary>
    public static int ClassSize(int size) => size <= FineLimit
        ? (size + FineStep - 1) & ~(FineStep - 1)
        : (int)SizeClasses.QuarterStepRound(size, FineLimitLog2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ClassIndex(int size) => size <= FineLimit
        ? (size - 1) >> 4
        : FineClassCount + SizeClasses.QuarterStepIndex(size, FineLimitLog2);

    /// <summary>Rents a block for <paramref name="size"/> bytes (1 to 1023).</summary>
    public NativeMemoryManager Rent(int size)
    {
        int classIndex = ClassIndex(size);
        SmallStripe stripe = HomeStripe();
        stripe.Enter();
        if (!_disposed)
        {
            NativeMemoryManager? buffer = stripe.TryPopUnsynchronized(classIndex);
            if (buffer is not null)
            {
                stripe.Hits++;
                stripe.BytesInUse += buffer.Length;
                stripe.BytesRented += buffer.Length;
                stripe.BytesRequested += size;
                stripe.RentsByClass[classIndex]++;
                stripe.InUseByClass[classIndex]++;
                stripe.Exit();
                buffer.Reactivate();
                return buffer;
            }
        }

        stripe.Exit();
        return RentSlow(classIndex, size);
    }

    /// <summary>Takes a block back from its owner.</summary>
    public void Release(NativeMemoryManager buffer)
    {
        SmallStripe stripe = HomeStripe();
        stripe.Enter();
        stripe.Returns++;
        stripe.BytesInUse -= buffer.Length;
        int classIndex = ClassIndex(buffer.Length);
        stripe.InUseByClass[classIndex]--;
        if (!_disposed)
        {
            stripe.PushUnsynchronized(classIndex, buffer);
            stripe.Exit();
            return;
        }

        stripe.Exit();
        _heap.ReleaseAfterDispose(buffer);
    }

    /// <summary>Takes a leaked block back after its quarantine.</summary>
    public void Reclaim(NativeMemoryManager buffer) => _quarantine.Add(buffer, this, "small");

    public override TierStatistics GetStatistics()
    {
        long hits = 0, misses = 0, returns = 0, inUse = 0, rented = 0, requested = 0;
        var rentedByClass = new long[ClassCount];
        foreach (SmallStripe stripe in _stripes)
        {
            stripe.Enter();
            AddRentedBytesUnsynchronized(stripe, rentedByClass);
            hits += stripe.Hits;
            misses += stripe.Misses;
            returns += stripe.Returns;
            inUse += stripe.BytesInUse;
            rented += stripe.BytesRented;
            requested += stripe.BytesRequested;
            stripe.Exit();
        }

        return Snapshot("small", hits, misses, returns, inUse, rented, requested, _heap, rentedByClass);
    }

    /// <summary>Adds a histogram row for every class rented so far.</summary>
    public void AddClassStatistics(List<SizeClassStatistics> into)
    {
        var rents = new long[ClassCount];
        var inUse = new long[ClassCount];
        var cached = new long[ClassCount];
        Sum(rents, inUse, cached);
        for (int classIndex = 0; classIndex < ClassCount; classIndex++)
        {
            if (rents[classIndex] > 0)
            {
                into.Add(new SizeClassStatistics
                {
                    Tier = "small",
                    ClassSize = ClassLength(classIndex),
                    Rents = rents[classIndex],
                    BuffersInUse = inUse[classIndex],
                    HighWaterMark = _highWater.HighWaterMark(classIndex),
                    Cached = cached[classIndex],
                });
            }
        }
    }

    /// <summary>Samples each class's buffers in use for the high-water marks, then lets the slab tier judge idleness.</summary>
    public override void ReleaseIdle(long now, long delayInTicks)
    {
        var inUse = new long[ClassCount];
        long activity = Sum(null, inUse, null);
        _highWater.Sample(now, delayInTicks, inUse);
        TrimIfIdle(now, delayInTicks, activity);
    }

    public override void Trim()
    {
        // Every stripe stays locked while the slabs are sorted out, so no free block is handed out meanwhile. Other
        // paths lock one stripe at a time, so taking them all in order cannot deadlock.
        var free = new List<NativeMemoryManager>();
        foreach (SmallStripe stripe in _stripes)
        {
            stripe.Enter();
        }

        try
        {
            if (_disposed)
            {
                return;
            }

            long activity = 0;
            var rentedByClass = new long[ClassCount];
            foreach (SmallStripe stripe in _stripes)
            {
                stripe.DrainUnsynchronized(free);
                activity += stripe.Hits + stripe.Misses + stripe.Returns;
                AddRentedBytesUnsynchronized(stripe, rentedByClass);
            }

            // Every stripe is held, so the activity summed here covers every return of the blocks just collected.
            var returnedBy = new long[ClassCount];
            Array.Fill(returnedBy, ReturnedBy(activity));
            int next = 0;
            foreach (NativeMemoryManager buffer in _heap.TrimFree(free, returnedBy, classes: null, rentedByClass))
            {
                _stripes[next++ & _stripeMask].PushUnsynchronized(ClassIndex(buffer.Length), buffer);
            }
        }
        finally
        {
            foreach (SmallStripe stripe in _stripes)
            {
                stripe.Exit();
            }
        }
    }

    public override void Dispose()
    {
        _disposed = true;
        var cached = new List<NativeMemoryManager>();
        foreach (SmallStripe stripe in _stripes)
        {
            stripe.Enter();
            stripe.DrainUnsynchronized(cached);
            stripe.Exit();
        }

        _heap.ReleaseCached(cached);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private SmallStripe HomeStripe() => _stripes[Thread.GetCurrentProcessorId() & _stripeMask];

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NativeMemoryManager RentSlow(int classIndex, int size)
    {
        if (_disposed)
        {
            ThrowHelper.ThrowPoolDisposed();
        }

        // Blocks returned on other cores are still ours: take one before cutting a new block, so a rent-here,
        // return-there pattern cannot grow the tier without bound.
        NativeMemoryManager? buffer = null;
        foreach (SmallStripe other in _stripes)
        {
            other.Enter();
            buffer = _disposed ? null : other.TryPopUnsynchronized(classIndex);
            other.Exit();
            if (buffer is not null)
            {
                break;
            }
        }

        bool hit = buffer is not null;
        if (buffer is null)
        {
            buffer = _heap.Carve(classIndex, ClassSize(size), SlabBytes, "small");
        }
        else
        {
            buffer.Reactivate();
        }

        SmallStripe home = HomeStripe();
        home.Enter();
        if (hit)
        {
            home.Hits++;
        }
        else
        {
            home.Misses++;
        }

        home.BytesInUse += buffer.Length;
        home.BytesRented += buffer.Length;
        home.BytesRequested += size;
        home.RentsByClass[classIndex]++;
        home.InUseByClass[classIndex]++;
        home.Exit();
        return buffer;
    }

    /// <summary>Adds the bytes rented so far from each class on <paramref name="stripe"/>, whose lock the caller holds.</summary>
    private static void AddRentedBytesUnsynchronized(SmallStripe stripe, long[] into)
    {
        for (int classIndex = 0; classIndex < ClassCount; classIndex++)
        {
            into[classIndex] += stripe.RentsByClass[classIndex] * ClassLength(classIndex);
        }
    }

    /// <summary>The block size of class <paramref name="classIndex"/>.</summary>
    private static int ClassLength(int classIndex) => classIndex < FineClassCount
        ? (classIndex + 1) * FineStep
        : (int)SizeClasses.QuarterStepSize(classIndex - FineClassCount, FineLimitLog2);

    /// <summary>Sums the per-class figures of every stripe into the arrays given (null ones are skipped); returns the tier's rents plus returns.</summary>
    private long Sum(long[]? rents, long[]? inUse, long[]? cached)
    {
        long activity = 0;
        foreach (SmallStripe stripe in _stripes)
        {
            stripe.Enter();
            activity += stripe.Hits + stripe.Misses + stripe.Returns;
            for (int classIndex = 0; classIndex < ClassCount; classIndex++)
            {
                if (rents is not null)
                {
                    rents[classIndex] += stripe.RentsByClass[classIndex];
                }

                if (inUse is not null)
                {
                    inUse[classIndex] += stripe.InUseByClass[classIndex];
                }

                if (cached is not null)
                {
                    cached[classIndex] += stripe.CountOf(classIndex);
                }
            }

            stripe.Exit();
        }

        return activity;
    }
}
