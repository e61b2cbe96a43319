using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What the safety tests share: the sizes that land in each tier, the modes, pools built for a mode, the address
/// range of an owner, and the checks that no two live owners share a byte.
/// </summary>
public static class SafetyCases
{
    /// <summary>The idle delay every safety pool runs with, on a fake clock.</summary>
    public static readonly TimeSpan IdleDelay = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Moves a fake clock on by <paramref name="by"/>, stopping at every tick of the pools' timers on the way (ticks
    /// fall every quarter delay from the clock's start, when the safety pools are built). A single long
    /// <see cref="Microsoft.Extensions.Time.Testing.FakeTimeProvider.Advance"/> would run all the ticks it passes at
    /// its end time, which the pool's clock rightly counts as one tick that came late.
    /// </summary>
    public static void Advance(Microsoft.Extensions.Time.Testing.FakeTimeProvider time, TimeSpan by)
    {
        TimeSpan period = IdleDelay / 4;
        DateTimeOffset target = time.GetUtcNow() + by;
        while (true)
        {
            long ticksSinceStart = (time.GetUtcNow() - time.Start).Ticks;
            DateTimeOffset nextTick = time.Start + TimeSpan.FromTicks(((ticksSinceStart / period.Ticks) + 1) * period.Ticks);
            if (nextTick > target)
            {
                break;
            }

            time.Advance(nextTick - time.GetUtcNow());
        }

        time.Advance(target - time.GetUtcNow());
    }

    /// <summary>
    /// Moves the clock on by three delays, which covers a quarantine and then the delay before an unmap, and checks
    /// that the disposed <paramref name="pool"/> holds nothing: nothing in use, in quarantine or waiting to be unmapped.
    /// </summary>
    internal static void AssertDrainedThreeDelaysLater(TieredMemoryPool pool, Microsoft.Extensions.Time.Testing.FakeTimeProvider time)
    {
        Advance(time, IdleDelay * 3);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.Equal(0, drained.BytesQuarantined);
        Assert.Equal(0, drained.BytesAwaitingRelease);
        Assert.Equal(0, drained.BytesInUse);
    }

    /// <summary>Each of <paramref name="sizes"/> in both owner modes.</summary>
    internal static TheoryData<int, OwnerMode> SizesInBothModes(params int[] sizes)
    {
        var data = new TheoryData<int, OwnerMode>();
        foreach (int size in sizes)
        {
            foreach (OwnerMode mode in BothOwnerModes)
            {
                data.Add(size, mode);
            }
        }

        return data;
    }

    /// <summary>One size per tier, in both owner modes, with each of <paramref name="variants"/>.</summary>
    internal static TheoryData<int, OwnerMode, T> OneSizePerTierInBothModes<T>(params T[] variants)
    {
        var data = new TheoryData<int, OwnerMode, T>();
        foreach (int size in OneSizePerTier)
        {
            foreach (OwnerMode mode in BothOwnerModes)
            {
                foreach (T variant in variants)
                {
                    data.Add(size, mode, variant);
                }
            }
        }

        return data;
    }

    /// <summary>Small, medium, large and huge.</summary>
    internal static readonly int[] OneSizePerTier = [100, 4096, 100_000, 3_000_000];

    /// <summary>Every tier, with two medium sizes (the medium tier has per-thread caches per size class).</summary>
    internal static readonly int[] Sizes = [100, 4096, 8192, 100_000, 3_000_000];

    /// <summary>The modes that promise a fresh owner per rent (ReuseOwners off).</summary>
    internal static readonly OwnerMode[] FreshOwnerModes = [OwnerMode.Default, OwnerMode.PinnedArrays, OwnerMode.DiagnosticsAll];

    /// <summary>ReuseOwners off and on, on native pages.</summary>
    internal static readonly OwnerMode[] BothOwnerModes = [OwnerMode.Default, OwnerMode.ReuseOwners];

    /// <summary>Every tier (two medium sizes) in every fresh-owner mode.</summary>
    public static TheoryData<int, OwnerMode> SizesInFreshOwnerModes => Cross(Sizes, FreshOwnerModes);

    /// <summary>One size per tier in every fresh-owner mode.</summary>
    public static TheoryData<int, OwnerMode> TiersInFreshOwnerModes => Cross(OneSizePerTier, FreshOwnerModes);

    /// <summary>One size per tier, ReuseOwners off and on.</summary>
    public static TheoryData<int, OwnerMode> TiersInBothOwnerModes => Cross(OneSizePerTier, BothOwnerModes);

    /// <summary>Every tier (two medium sizes), ReuseOwners off and on, plus pinned arrays and diagnostic mode.</summary>
    public static TheoryData<int, OwnerMode> SizesInEveryMode => Cross(Sizes, [OwnerMode.Default, OwnerMode.ReuseOwners, OwnerMode.PinnedArrays, OwnerMode.DiagnosticsAll]);

    /// <summary>Every tier (two medium sizes), alone.</summary>
    public static TheoryData<int> EverySize => [.. Sizes];

    /// <summary>One size per tier, alone.</summary>
    public static TheoryData<int> EveryTier => [.. OneSizePerTier];

    /// <summary>The options of a pool in <paramref name="mode"/>, on <paramref name="time"/> with a 10 s idle delay.</summary>
    public static TieredMemoryPoolOptions Options(OwnerMode mode, TimeProvider time) => new()
    {
        ReuseOwners = mode == OwnerMode.ReuseOwners,
        UsePinnedArrays = mode == OwnerMode.PinnedArrays,
        Diagnostics = mode == OwnerMode.DiagnosticsAll ? DiagnosticLevel.All : DiagnosticLevel.Off,
        TimeProvider = time,
        IdleReleaseDelay = IdleDelay,
    };

    /// <summary>
    /// Rents <paramref name="count"/> buffers of <paramref name="size"/> on a thread started for it and returns them
    /// there: what a thread's return leaves in its caches, slots and the shared caches, with that thread still registered.
    /// </summary>
    public static void RentAndReturnOnAnotherThread(TieredMemoryPool pool, int size, int count)
    {
        var thread = new System.Threading.Thread(() =>
        {
            var owners = new IMemoryOwner<byte>[count];
            for (int i = 0; i < count; i++)
            {
                owners[i] = pool.Rent(size);
            }

            Array.ForEach(owners, static owner => owner.Dispose());
        });
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)), "the rents and returns never ended");
    }

    /// <summary>Bytes a rent of <paramref name="size"/> maps in a fresh pool without hugepages: what a cap must allow for it.</summary>
    public static long BytesMappedFor(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { EnableHugepages = false, TimeProvider = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(), IdleReleaseDelay = IdleDelay });
        using IMemoryOwner<byte> owner = pool.Rent(size);
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        return statistics.Small.BytesAllocated + statistics.Medium.BytesAllocated + statistics.Large.BytesAllocated + statistics.Huge.BytesAllocated;
    }

    /// <summary>A pool in <paramref name="mode"/> whose clock never moves unless the test moves it.</summary>
    public static TieredMemoryPool Pool(OwnerMode mode, TimeProvider? time = null) =>
        new(Options(mode, time ?? new Microsoft.Extensions.Time.Testing.FakeTimeProvider()));

    /// <summary>The first byte and length of a live owner's memory.</summary>
    public static unsafe OwnerRange RangeOf(IMemoryOwner<byte> owner)
    {
        Span<byte> span = owner.Memory.Span;
        fixed (byte* pointer = span)
        {
            return new OwnerRange((nint)pointer, span.Length);
        }
    }

    /// <summary>
    /// The range of an owner the test holds as live. If its <see cref="IMemoryOwner{T}.Memory"/> throws, someone
    /// else's dispose returned the block under it: that is an assertion failure, not an error of the test.
    /// </summary>
    public static OwnerRange RangeOfLive(IMemoryOwner<byte> owner, string what)
    {
        try
        {
            return RangeOf(owner);
        }
        catch (ObjectDisposedException error)
        {
            Assert.Fail($"{what}: an owner the test holds live (never disposed) threw ObjectDisposedException, so another owner's dispose returned its block: {error.Message}");
            throw;
        }
    }

    /// <summary>Asserts that no two of <paramref name="ranges"/> share a byte.</summary>
    public static void AssertDisjoint(IReadOnlyList<OwnerRange> ranges, string what)
    {
        OwnerRange[] sorted = [.. ranges.OrderBy(static range => range.Start)];
        for (int i = 1; i < sorted.Length; i++)
        {
            Assert.False(
                sorted[i - 1].Overlaps(sorted[i]),
                $"{what}: two live owners share memory: {sorted[i - 1]} and {sorted[i]} (of {sorted.Length} live owners)");
        }
    }

    /// <summary>Asserts that no two of the live <paramref name="owners"/> share a byte.</summary>
    public static void AssertDisjoint(IEnumerable<IMemoryOwner<byte>> owners, string what) =>
        AssertDisjoint([.. owners.Select(owner => RangeOfLive(owner, what))], what);

    /// <summary>Writes a stamp into the first, middle and last 8 bytes of a live owner.</summary>
    public static void Stamp(IMemoryOwner<byte> owner, long stamp, string what)
    {
        Span<byte> span = SpanOfLive(owner, what);
        foreach (int offset in StampOffsets(span.Length))
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(span[offset..], stamp);
        }
    }

    /// <summary>Whether a live owner still carries <paramref name="stamp"/> everywhere <see cref="Stamp"/> wrote it.</summary>
    public static bool HasStamp(IMemoryOwner<byte> owner, long stamp, string what)
    {
        Span<byte> span = SpanOfLive(owner, what);
        foreach (int offset in StampOffsets(span.Length))
        {
            if (System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(span[offset..]) != stamp)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Whether the memory at <paramref name="range"/> carries <paramref name="stamp"/> everywhere <see cref="Stamp"/> writes it; the caller knows it is mapped.</summary>
    public static unsafe bool HasStampAt(OwnerRange range, long stamp)
    {
        var span = new ReadOnlySpan<byte>((void*)range.Start, range.Length);
        foreach (int offset in StampOffsets(span.Length))
        {
            if (System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(span[offset..]) != stamp)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Asserts that every owner still carries the stamp written into it.</summary>
    public static void AssertStamps(IReadOnlyList<IMemoryOwner<byte>> owners, IReadOnlyList<long> stamps, string what)
    {
        for (int i = 0; i < owners.Count; i++)
        {
            Assert.True(HasStamp(owners[i], stamps[i], what), $"{what}: live owner {i} ({RangeOfLive(owners[i], what)}) lost its stamp {stamps[i]}: another owner wrote into its block");
        }
    }

    /// <summary>Rents one buffer and drops its owner without dispose; returns where its memory was.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static OwnerRange LeakOne(TieredMemoryPool pool, int size)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span.Fill(0x5A);
        return RangeOf(owner);
    }

    /// <summary>Rents one buffer, then disposes the pool; the owner is held only by the list returned.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static List<IMemoryOwner<byte>> RentAndDisposeThePool(TieredMemoryPool pool, int size)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        pool.Dispose();
        return [owner];
    }

    /// <summary>Takes the owner out of <paramref name="holder"/> and drops it without dispose; returns where its memory was.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static OwnerRange LeakFrom(List<IMemoryOwner<byte>> holder)
    {
        IMemoryOwner<byte> owner = holder[0];
        holder.Clear();
        owner.Memory.Span.Fill(0x5A);
        return RangeOf(owner);
    }

    /// <summary>
    /// Makes a pool on <paramref name="time"/>, runs <paramref name="afterMaking"/>, rents and returns two 100 KB and two
    /// 3 MB buffers (so its region caches hold them) and drops the pool; returns where the buffers were.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static List<OwnerRange> DropAPoolWithCachedRegions(TimeProvider time, Action? afterMaking = null)
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time, IdleReleaseDelay = IdleDelay });
        afterMaking?.Invoke();
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 4; i++)
        {
            owners.Add(pool.Rent(i % 2 == 0 ? 100_000 : 3_000_000));
        }

        List<OwnerRange> ranges = owners.ConvertAll(RangeOf);
        owners.ForEach(static owner => owner.Dispose());
        return ranges;
    }

    /// <summary>Rents a large buffer, writes to it and returns it: the pool then keeps one idle region for reuse.</summary>
    public static void ReturnOneLargeRegion(TieredMemoryPool pool)
    {
        using (IMemoryOwner<byte> owner = pool.Rent(100_000))
        {
            owner.Memory.Span[0] = 1;
        }

        Assert.True(pool.GetStatistics().Large.BytesRetained > 0, "the returned region should be kept for reuse");
    }

    /// <summary>Rents <paramref name="count"/> buffers and drops their owners without dispose.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Leak(TieredMemoryPool pool, int size, int count)
    {
        for (int i = 0; i < count; i++)
        {
            pool.Rent(size).Memory.Span[0] = 0x5A;
        }
    }

    /// <summary>
    /// The figures of <paramref name="statistics"/> that are below zero, described, or <see langword="null"/> when none
    /// is: read while the pool is busy, its counts may lag by a rent or a return, never go negative.
    /// </summary>
    public static string? NegativeFigures(TieredMemoryPoolStatistics statistics)
    {
        var negative = new List<string>();
        if (statistics.BytesAwaitingRelease < 0 || statistics.MunmapCalls < 0)
        {
            negative.Add($"{statistics.BytesAwaitingRelease} bytes awaiting release, {statistics.MunmapCalls} munmaps");
        }

        foreach (TierStatistics tier in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
        {
            if (tier.CacheHits < 0 || tier.BytesInUse < 0 || tier.BytesRetained < 0)
            {
                negative.Add($"{tier.Name}: {tier.CacheHits} hits, {tier.BytesInUse} bytes in use, {tier.BytesRetained} retained");
            }
        }

        foreach (SizeClassStatistics row in statistics.SizeHistogram)
        {
            if (row.BuffersInUse < 0 || row.Rents < 0)
            {
                negative.Add($"{row.Tier} {row.ClassSize} B: {row.Rents} rents, {row.BuffersInUse} in use");
            }
        }

        return negative.Count == 0 ? null : string.Join("; ", negative);
    }

    /// <summary>Three full collections with the finalizers they queue: a dropped owner is finalized by the end.</summary>
    public static void CollectEverything()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    /// <summary>Writes one byte at each end of a range through a raw pointer and reads it back, after asserting the range is mapped and writable.</summary>
    public static unsafe void AssertMappedAndWritable(OwnerRange range, string what)
    {
        Assert.True(ProcessMappings.IsMapped(range.Start, range.Length), $"{what}: {range} is no longer mapped ({ProcessMappings.Describe(range.Start, range.Length)})");
        Assert.True(ProcessMappings.IsWritable(range.Start, range.Length), $"{what}: {range} is mapped but not writable ({ProcessMappings.Describe(range.Start, range.Length)})");
        byte* first = (byte*)range.Start;
        byte* last = first + range.Length - 1;
        *first = 0xA5;
        *last = 0x5A;
        Assert.Equal(0xA5, *first);
        Assert.Equal(0x5A, *last);
    }

    private static Span<byte> SpanOfLive(IMemoryOwner<byte> owner, string what)
    {
        try
        {
            return owner.Memory.Span;
        }
        catch (ObjectDisposedException error)
        {
            Assert.Fail($"{what}: an owner the test holds live (never disposed) threw ObjectDisposedException, so another owner's dispose returned its block: {error.Message}");
            throw;
        }
    }

    private static int[] StampOffsets(int length) => [0, ((length / 2) - 4) & ~7, length - 8];

    private static TheoryData<int, OwnerMode> Cross(int[] sizes, OwnerMode[] modes)
    {
        var data = new TheoryData<int, OwnerMode>();
        foreach (int size in sizes)
        {
            foreach (OwnerMode mode in modes)
            {
                data.Add(size, mode);
            }
        }

        return data;
    }
}
