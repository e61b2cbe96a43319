using System;
using System.Buffers;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>Every public entry point, every invalid argument: the documented exception, and a pool that still passes its consistency check.</summary>
public sealed class BadInputTests
{
    public static TheoryData<string, Type, Action<TieredMemoryPool>> BadCalls => new()
    {
        { "Rent(-2)", typeof(ArgumentOutOfRangeException), pool => pool.Rent(-2) },
        { "Rent(int.MinValue)", typeof(ArgumentOutOfRangeException), pool => pool.Rent(int.MinValue) },
        { "Rent(MaxBufferSize + 1)", typeof(ArgumentOutOfRangeException), pool => pool.Rent(pool.MaxBufferSize + 1) },
        { "Rent(int.MaxValue)", typeof(ArgumentOutOfRangeException), pool => pool.Rent(int.MaxValue) },
        { "Pin(-1)", typeof(ArgumentOutOfRangeException), pool => Pin(pool, -1) },
        { "Pin(Length + 1)", typeof(ArgumentOutOfRangeException), pool => Pin(pool, 4097) },
        { "Memory after dispose", typeof(ObjectDisposedException), pool => MemoryAfterDispose(pool) },
        { "Span of a stale Memory", typeof(ObjectDisposedException), pool => StaleSpan(pool) },
        { "TryMap(0 bytes)", typeof(ArgumentOutOfRangeException), _ => PageAllocator.Default.TryMap(0, 4096, PageKind.Normal, out nint _) },
        { "TryMap(alignment 3)", typeof(ArgumentOutOfRangeException), _ => PageAllocator.Default.TryMap(4096, 3, PageKind.Normal, out nint _) },
        { "NativeMemoryManager(null, 10)", typeof(ArgumentNullException), _ => new NativeMemoryManager(0, 10).Dispose() },
        { "NativeMemoryManager(p, -1)", typeof(ArgumentOutOfRangeException), _ => new NativeMemoryManager(64, -1).Dispose() },
        { "new TieredMemoryPool(null)", typeof(ArgumentNullException), _ => new TieredMemoryPool(null!).Dispose() },
        { "new TieredMemoryPool(bad options)", typeof(ArgumentException), _ => new TieredMemoryPool(new TieredMemoryPoolOptions { MmapThreshold = 3 }).Dispose() },
    };

    [Theory]
    [MemberData(nameof(BadCalls))]
    public void EveryBadCallThrowsTheDocumentedExceptionAndLeavesThePoolConsistent(string call, Type exception, Action<TieredMemoryPool> act)
    {
        using var pool = new TieredMemoryPool();
        using IMemoryOwner<byte> before = pool.Rent(100_000);
        before.Memory.Span.Fill(0x5A);

        Exception thrown = Assert.ThrowsAny<Exception>(() => act(pool));
        Assert.True(exception.IsInstanceOfType(thrown), $"{call} threw {thrown.GetType().Name}, expected {exception.Name}");

        AssertConsistent(pool);
        Assert.True(before.Memory.Span.IndexOfAnyExcept((byte)0x5A) < 0);
    }

    /// <summary>Every tier still rents and returns, and the counters balance.</summary>
    internal static void AssertConsistent(TieredMemoryPool pool)
    {
        foreach (int size in new[] { 10, 4096, 100_000, 3_000_000 })
        {
            using IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(1);
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        foreach (TierStatistics tier in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
        {
            Assert.Equal(tier.Rents, tier.CacheHits + tier.CacheMisses);
            Assert.True(tier.BytesInUse >= 0 && tier.BytesRetained >= 0, tier.ToString());
        }
    }

    private static void Pin(TieredMemoryPool pool, int index)
    {
        using IMemoryOwner<byte> owner = pool.Rent(4096);
        ((MemoryManager<byte>)owner).Pin(index).Dispose();
    }

    private static void MemoryAfterDispose(TieredMemoryPool pool)
    {
        IMemoryOwner<byte> owner = pool.Rent(4096);
        owner.Dispose();
        _ = owner.Memory;
    }

    private static void StaleSpan(TieredMemoryPool pool)
    {
        IMemoryOwner<byte> owner = pool.Rent(2000);
        Memory<byte> stale = owner.Memory;
        owner.Dispose();
        stale.Span[0] = 1;
    }
}
