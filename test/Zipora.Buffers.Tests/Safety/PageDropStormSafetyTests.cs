using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Trims drop the pages of slabs whose blocks on them are all free, and skip the pages dropped before until a block on
/// them is rented again. Here trims (called directly and by idle ticks of a fake clock) race threads that rent sizes
/// across the small and medium tiers, blocks that straddle pages included, fill every byte of each block with a pattern
/// of their own, check it before dispose, dispose twice, and hand owners to other threads to dispose: no page under a
/// live block is ever dropped (a dropped page reads back as zeros, which no pattern is), and once everything is back
/// the statistics add up: nothing in use, every rent a hit or a miss, nothing retained or fragmented after a trim, and
/// nothing evicted again by trims and ticks while the pool is quiet.
/// </summary>
public sealed class PageDropStormSafetyTests
{
    private static readonly TimeSpan s_duration = TimeSpan.FromMilliseconds(600);

    /// <summary>Small sizes whose blocks straddle pages (640, 1008) or leave a tail (112), medium ones that share a page (2 KB) or span several.</summary>
    private static readonly int[] s_sizes = [16, 100, 600, 640, 1000, 1500, 3000, 5000, 8192, 16384];

    /// <summary>How the pool's pages are dropped: by the OS, refused by a scripted allocator, never (pinned arrays).</summary>
    public enum Advice
    {
        Accepted,
        RefusedByTheAllocator,

        /// <summary><see cref="TieredMemoryPoolOptions.UseLazyFree"/>: MADV_FREE, whose pages keep their contents until the kernel reclaims them.</summary>
        LazyFree,
    }

    public static TheoryData<OwnerMode, Advice> ModesAndAdvice => new()
    {
        { OwnerMode.Default, Advice.Accepted },
        { OwnerMode.ReuseOwners, Advice.Accepted },
        { OwnerMode.PinnedArrays, Advice.Accepted },
        { OwnerMode.Default, Advice.RefusedByTheAllocator },
        { OwnerMode.ReuseOwners, Advice.RefusedByTheAllocator },
        { OwnerMode.Default, Advice.LazyFree },
    };

    [Theory]
    [MemberData(nameof(ModesAndAdvice))]
    public void TrimsAndIdleTicksRacingRentsNeverDropAPageUnderALiveBlockAndTheFiguresAddUpOnceQuiet(OwnerMode mode, Advice advice)
    {
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        if (advice == Advice.RefusedByTheAllocator)
        {
            options.PageAllocator = new ScriptedPageAllocator { RefuseAdvice = true };
        }

        options.UseLazyFree = advice == Advice.LazyFree;

        using var pool = new TieredMemoryPool(options);
        // A reused owner's second dispose is ignored only until its block is rented again (its documented contract),
        // so with ReuseOwners the workers dispose each owner once.
        var storm = new PatternStorm(pool, time, disposeTwice: mode != OwnerMode.ReuseOwners);
        storm.Run(workers: 4, s_duration, ranEnough: () => storm.Rents > 2_000 && storm.Trims > 20 && storm.CrossThreadDisposes > 20);

        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        Assert.True(storm.Rents > 2_000, $"only {storm.Rents} rents ran");
        Assert.True(storm.Trims > 20, $"only {storm.Trims} trims ran");
        Assert.True(storm.CrossThreadDisposes > 20, $"only {storm.CrossThreadDisposes} owners were disposed on another thread");

        AssertQuietFiguresAddUp(pool, time, pagesDrop: advice == Advice.Accepted && mode != OwnerMode.PinnedArrays);
    }

    /// <summary>
    /// At <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> a rent that needs a new slab first trims the whole pool
    /// from inside the rent, racing the other renters and the trimmer, then maps or is refused: no live block is harmed,
    /// and a refused rent counts nothing.
    /// </summary>
    [Theory]
    [MemberData(nameof(OwnerModes))]
    public void TrimsFromRentsAtTheLimitRacingRentsAndTrimsNeverDropAPageUnderALiveBlock(OwnerMode mode)
    {
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.MaxBytesInUse = 1024 * 1024;
        using var pool = new TieredMemoryPool(options);
        var storm = new PatternStorm(pool, time, disposeTwice: mode != OwnerMode.ReuseOwners) { RefusalsExpected = true };
        storm.Run(workers: 4, s_duration, ranEnough: () => storm.Rents > 2_000 && storm.Refusals > 0);

        Assert.True(storm.Failures.IsEmpty, string.Join(Environment.NewLine, storm.Failures));
        Assert.True(storm.Rents > 2_000, $"only {storm.Rents} rents ran");
        Assert.True(storm.Refusals > 0, "no rent reached the limit, so no rent trimmed the pool");
        foreach (TierStatistics tier in Slabbed(pool.GetStatistics()))
        {
            Assert.Equal(0, tier.BytesInUse);
            Assert.Equal(tier.Rents, tier.CacheHits + tier.CacheMisses);
            Assert.Equal(tier.Rents, tier.Returns);
        }

        Assert.Equal(storm.Rents, pool.GetStatistics().Small.Rents + pool.GetStatistics().Medium.Rents);
    }

    public static TheoryData<OwnerMode> OwnerModes => [OwnerMode.Default, OwnerMode.ReuseOwners];

    /// <summary>Everything is back: the statistics of the slab tiers add up, before a trim, after it and over idle ticks.</summary>
    private static void AssertQuietFiguresAddUp(TieredMemoryPool pool, FakeTimeProvider time, bool pagesDrop)
    {
        foreach (TierStatistics tier in Slabbed(pool.GetStatistics()))
        {
            Assert.Equal(0, tier.BytesInUse);
            Assert.Equal(tier.Rents, tier.CacheHits + tier.CacheMisses);
            Assert.Equal(tier.Rents, tier.Returns);
            Assert.True(tier.BytesRetained >= 0 && tier.BytesFragmented >= 0, $"{tier.Name}: retained {tier.BytesRetained}, fragmented {tier.BytesFragmented}");
        }

        // Keep one block per size live through the trims, so some slabs stay and their free pages are dropped or
        // pinned, not unmapped; each still carries its pattern afterwards.
        var kept = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
        long stamp = long.MaxValue / 2;
        foreach (int size in s_sizes)
        {
            IMemoryOwner<byte> owner = pool.Rent(size);
            PatternStorm.Fill(owner.Memory.Span, ++stamp);
            kept.Add((owner, stamp));
        }

        TieredMemoryPoolStatistics before = pool.GetStatistics();
        pool.Trim();
        TieredMemoryPoolStatistics trimmed = pool.GetStatistics();
        if (pagesDrop)
        {
            // Free bytes a trim found pinned beside a block since returned may only turn into dropped ones. (Where pages
            // cannot be dropped they rightly turn into retained ones.)
            Assert.True(trimmed.Small.BytesRetained <= before.Small.BytesRetained, $"a trim raised the small tier's retained bytes from {before.Small.BytesRetained} to {trimmed.Small.BytesRetained}");
            Assert.True(trimmed.Medium.BytesRetained <= before.Medium.BytesRetained, $"a trim raised the medium tier's retained bytes from {before.Medium.BytesRetained} to {trimmed.Medium.BytesRetained}");
        }

        // A quiet pool: more trims and many idle ticks drop nothing again, and evict nothing more than the unmaps due.
        pool.Trim();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        TieredMemoryPoolStatistics quiet = pool.GetStatistics();
        SafetyCases.Advance(time, SafetyCases.IdleDelay * 3);
        pool.Trim();
        TieredMemoryPoolStatistics later = pool.GetStatistics();
        Assert.Equal(quiet.Small.BytesEvicted, later.Small.BytesEvicted);
        Assert.Equal(quiet.Medium.BytesEvicted, later.Medium.BytesEvicted);
        Assert.Equal(quiet.Small.BytesRetained + quiet.Small.BytesFragmented, later.Small.BytesRetained + later.Small.BytesFragmented);
        Assert.Equal(quiet.Medium.BytesRetained + quiet.Medium.BytesFragmented, later.Medium.BytesRetained + later.Medium.BytesFragmented);

        foreach ((IMemoryOwner<byte> owner, long expected) in kept)
        {
            int wrong = PatternStorm.FirstWrongByte(owner.Memory.Span, expected);
            Assert.True(wrong < 0, $"a block kept live through quiet trims and ticks ({SafetyCases.RangeOf(owner)}) lost its pattern at byte {wrong}");
            owner.Dispose();
        }

        pool.Trim();
        foreach (TierStatistics tier in Slabbed(pool.GetStatistics()))
        {
            Assert.Equal(0, tier.BytesInUse);
            Assert.Equal(0, tier.BytesFragmented);
            Assert.Equal(0, tier.BytesRetained);
            Assert.Equal(tier.Rents, tier.Returns);
        }
    }

    private static TierStatistics[] Slabbed(TieredMemoryPoolStatistics statistics) => [statistics.Small, statistics.Medium];

    /// <summary>Workers fill each block with their own pattern and check it before dispose; a trimmer trims and ticks.</summary>
    internal sealed class PatternStorm(TieredMemoryPool pool, FakeTimeProvider? time, bool disposeTwice)
    {
        private readonly ConcurrentQueue<(IMemoryOwner<byte> Owner, long Stamp)> _handedOver = new();
        private readonly ConcurrentQueue<IMemoryOwner<byte>> _disposeAgain = new();
        private long _nextStamp;
        private long _rents;
        private long _trims;
        private long _crossThreadDisposes;
        private long _refusals;
        private long _leaks;
        private volatile bool _stop;

        public ConcurrentQueue<string> Failures { get; } = new();

        public long Rents => Interlocked.Read(ref _rents);

        public long Trims => Interlocked.Read(ref _trims);

        public long CrossThreadDisposes => Interlocked.Read(ref _crossThreadDisposes);

        /// <summary>Whether a rent may be refused at the pool's limit (counted, and the worker goes on returning).</summary>
        public bool RefusalsExpected { get; init; }

        public long Refusals => Interlocked.Read(ref _refusals);

        /// <summary>Of the owners a worker is done with, the share it drops without dispose (the trimmer then collects young objects now and then).</summary>
        public int LeakPercent { get; init; }

        public long Leaks => Interlocked.Read(ref _leaks);

        /// <summary>Fills every byte of <paramref name="span"/> with the 8 bytes of <paramref name="stamp"/> (never zero).</summary>
        public static void Fill(Span<byte> span, long stamp)
        {
            Span<long> words = MemoryMarshal.Cast<byte, long>(span);
            words.Fill(stamp);
            span[(words.Length * sizeof(long))..].Fill((byte)(stamp | 1));
        }

        /// <summary>The first byte that is not what <see cref="Fill"/> wrote, or -1.</summary>
        public static int FirstWrongByte(ReadOnlySpan<byte> span, long stamp)
        {
            ReadOnlySpan<long> words = MemoryMarshal.Cast<byte, long>(span);
            int wrongWord = words.IndexOfAnyExcept(stamp);
            if (wrongWord >= 0)
            {
                return wrongWord * sizeof(long);
            }

            int tail = words.Length * sizeof(long);
            int wrongTail = span[tail..].IndexOfAnyExcept((byte)(stamp | 1));
            return wrongTail < 0 ? -1 : tail + wrongTail;
        }

        /// <summary>
        /// Storms for <paramref name="duration"/>, and past it (up to twenty times as long) until
        /// <paramref name="ranEnough"/> says the race the test needs ran: on a loaded machine the trimmer may get a few
        /// slices of the duration.
        /// </summary>
        public void Run(int workers, TimeSpan duration, Func<bool>? ranEnough = null)
        {
            var threads = new List<Thread>();
            for (int i = 0; i < workers; i++)
            {
                int seed = i + 1;
                threads.Add(new Thread(() => Guard(() => Work(seed))) { IsBackground = true, Name = $"pattern worker {seed}" });
            }

            threads.Add(new Thread(() => Guard(Trim)) { IsBackground = true, Name = "pattern trimmer" });
            threads.ForEach(static thread => thread.Start());
            var elapsed = Stopwatch.StartNew();
            while ((elapsed.Elapsed < duration || ranEnough?.Invoke() == false) && elapsed.Elapsed < duration * 20 && Failures.IsEmpty)
            {
                Thread.Sleep(10);
            }

            _stop = true;
            threads.ForEach(static thread => thread.Join());
            while (_handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) handed))
            {
                Check(handed.Owner, handed.Stamp, "handed over, at the end");
                handed.Owner.Dispose();
            }

            while (_disposeAgain.TryDequeue(out IMemoryOwner<byte>? stale))
            {
                stale.Dispose();
            }
        }

        private void Guard(Action work)
        {
            try
            {
                work();
            }
            catch (Exception error)
            {
                Failures.Enqueue($"{Thread.CurrentThread.Name} threw {error}");
                _stop = true;
            }
        }

        private void Trim()
        {
            for (int round = 0; !_stop; round++)
            {
                pool.Trim();
                Interlocked.Increment(ref _trims);
                if (time is not null && round % 4 == 3)
                {
                    // A tick of the idle releaser: with the workers busy the tiers are not idle, but the clock's moves
                    // date the returns and let unmaps of wholly free slabs fall due.
                    time.Advance(SafetyCases.IdleDelay / 4);
                }

                if (LeakPercent > 0 && round % 16 == 0)
                {
                    GC.Collect(0);
                }

                Thread.Yield();
            }
        }

        private void Check(IMemoryOwner<byte> owner, long stamp, string when)
        {
            int wrong = FirstWrongByte(owner.Memory.Span, stamp);
            if (wrong >= 0)
            {
                Failures.Enqueue($"{when}: a live block {SafetyCases.RangeOf(owner)} of {owner.Memory.Length} bytes lost its pattern {stamp:x} at byte {wrong} (found {owner.Memory.Span[wrong]:x2}): a page under it was dropped, or another owner wrote to it");
                _stop = true;
            }
        }

        private void Work(int seed)
        {
            var random = new Random(seed);
            var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            while (!_stop)
            {
                if (held.Count < 24 && (held.Count == 0 || random.Next(3) != 0))
                {
                    IMemoryOwner<byte> owner;
                    try
                    {
                        owner = pool.Rent(s_sizes[random.Next(s_sizes.Length)]);
                    }
                    catch (InsufficientMemoryException) when (RefusalsExpected)
                    {
                        Interlocked.Increment(ref _refusals);
                        if (held.Count == 0)
                        {
                            Thread.Yield();
                            continue;
                        }

                        goto Return;
                    }

                    long stamp = Interlocked.Increment(ref _nextStamp) | (1L << 40);
                    Fill(owner.Memory.Span, stamp);
                    held.Add((owner, stamp));
                    Interlocked.Increment(ref _rents);
                    continue;
                }

            Return:
                int index = random.Next(held.Count);
                (IMemoryOwner<byte> Owner, long Stamp) entry = held[index];
                held[index] = held[^1];
                held.RemoveAt(held.Count - 1);
                Check(entry.Owner, entry.Stamp, "before dispose");
                if (random.Next(100) < LeakPercent)
                {
                    // Dropped without dispose: its finalizer quarantines the block, and a trim must leave its pages alone.
                    Interlocked.Increment(ref _leaks);
                    continue;
                }

                switch (random.Next(6))
                {
                    case 0:
                        // Another thread disposes it.
                        _handedOver.Enqueue(entry);
                        break;
                    case 1 when disposeTwice:
                        entry.Owner.Dispose();
                        entry.Owner.Dispose();
                        break;
                    case 2 when disposeTwice:
                        entry.Owner.Dispose();
                        _disposeAgain.Enqueue(entry.Owner);
                        break;
                    default:
                        entry.Owner.Dispose();
                        break;
                }

                if (_handedOver.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) handed))
                {
                    Check(handed.Owner, handed.Stamp, "handed over");
                    handed.Owner.Dispose();
                    Interlocked.Increment(ref _crossThreadDisposes);
                }

                if (_disposeAgain.Count > 64 && _disposeAgain.TryDequeue(out IMemoryOwner<byte>? stale))
                {
                    stale.Dispose();
                }
            }

            foreach ((IMemoryOwner<byte> owner, long stamp) in held)
            {
                Check(owner, stamp, "at the end");
                owner.Dispose();
            }
        }
    }
}
