using System;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

public sealed class TieredMemoryPoolOptionsTests
{
    public static TheoryData<string, Action<TieredMemoryPoolOptions>> InvalidOptions => new()
    {
        { nameof(TieredMemoryPoolOptions.MmapThreshold), o => o.MmapThreshold = 1000 },
        { nameof(TieredMemoryPoolOptions.MmapThreshold), o => o.MmapThreshold = 2048 },
        { nameof(TieredMemoryPoolOptions.MmapThreshold), o => o.MmapThreshold = -16384 },
        { nameof(TieredMemoryPoolOptions.MmapThreshold), o => o.MmapThreshold = 2 * 1024 * 1024 },
        { nameof(TieredMemoryPoolOptions.HugepageThreshold), o => o.HugepageThreshold = 8192 },
        { nameof(TieredMemoryPoolOptions.HugepageThreshold), o => o.HugepageThreshold = 16384 },
        { nameof(TieredMemoryPoolOptions.HugepageThreshold), o => o.HugepageThreshold = 3 * 1024 * 1024 },
        { nameof(TieredMemoryPoolOptions.MaxBufferSize), o => o.MaxBufferSize = 4095 },
        { nameof(TieredMemoryPoolOptions.MaxBufferSize), o => o.MaxBufferSize = -1 },
        { nameof(TieredMemoryPoolOptions.MaxBufferSize), o => { o.UsePinnedArrays = true; o.MaxBufferSize = int.MaxValue; } },
        { nameof(TieredMemoryPoolOptions.MaxBufferSize), o => { o.UsePinnedArrays = true; o.MaxBufferSize = TieredMemoryPoolOptions.MaxPinnedArrayBufferSize + 1; } },
        { nameof(TieredMemoryPoolOptions.RegionCacheMaxCount), o => o.RegionCacheMaxCount = -1 },
        { nameof(TieredMemoryPoolOptions.RegionCacheMaxBytes), o => o.RegionCacheMaxBytes = -1 },
        { nameof(TieredMemoryPoolOptions.HugeRegionCacheMaxCount), o => o.HugeRegionCacheMaxCount = -1 },
        { nameof(TieredMemoryPoolOptions.HugeRegionCacheMaxBytes), o => o.HugeRegionCacheMaxBytes = long.MinValue },
        { nameof(TieredMemoryPoolOptions.ThreadCacheMaxBuffers), o => o.ThreadCacheMaxBuffers = -5 },
        { nameof(TieredMemoryPoolOptions.ThreadCacheMaxBytes), o => o.ThreadCacheMaxBytes = -1 },
        { nameof(TieredMemoryPoolOptions.MaxRetainedBytes), o => o.MaxRetainedBytes = -1 },
        { nameof(TieredMemoryPoolOptions.Name), o => o.Name = " " },
        { nameof(TieredMemoryPoolOptions.MaxBytesInUse), o => o.MaxBytesInUse = -1 },
        { nameof(TieredMemoryPoolOptions.IdleReleaseDelay), o => o.IdleReleaseDelay = TimeSpan.Zero },
        { nameof(TieredMemoryPoolOptions.IdleReleaseDelay), o => o.IdleReleaseDelay = TimeSpan.FromSeconds(-1) },
        { nameof(TieredMemoryPoolOptions.Diagnostics), o => o.Diagnostics = (DiagnosticLevel)3 },
        { nameof(TieredMemoryPoolOptions.TimeProvider), o => o.TimeProvider = null! },
    };

    public static TheoryData<string, Action<TieredMemoryPoolOptions>> ExtremeValidOptions => new()
    {
        { "no thread caches", o => o.ThreadCacheMaxBuffers = 0 },
        { "no thread-cache bytes", o => o.ThreadCacheMaxBytes = 0 },
        { "largest thread caches", o => { o.ThreadCacheMaxBuffers = int.MaxValue; o.ThreadCacheMaxBytes = int.MaxValue; } },
        { "no region caches", o => { o.RegionCacheMaxCount = 0; o.RegionCacheMaxBytes = 0; o.HugeRegionCacheMaxCount = 0; o.HugeRegionCacheMaxBytes = 0; } },
        { "largest region caches", o => { o.RegionCacheMaxCount = int.MaxValue; o.RegionCacheMaxBytes = long.MaxValue; o.HugeRegionCacheMaxCount = int.MaxValue; o.HugeRegionCacheMaxBytes = long.MaxValue; } },
        { "nothing retained", o => o.MaxRetainedBytes = 0 },
        { "everything retained", o => o.MaxRetainedBytes = long.MaxValue },
        { "largest cap in use", o => o.MaxBytesInUse = long.MaxValue },
        { "smallest thresholds", o => { o.MmapThreshold = 4096; o.HugepageThreshold = 8192; } },
        { "largest thresholds", o => { o.MmapThreshold = 1024 * 1024; o.HugepageThreshold = 1024 * 1024 * 1024; } },
        { "largest buffer", o => o.MaxBufferSize = int.MaxValue },
        { "largest pinned-array buffer", o => { o.UsePinnedArrays = true; o.MaxBufferSize = TieredMemoryPoolOptions.MaxPinnedArrayBufferSize; } },
        { "shortest delay", o => o.IdleReleaseDelay = TimeSpan.FromTicks(1) },
        { "rarest sampling", o => { o.Diagnostics = DiagnosticLevel.Sampled; o.DiagnosticSampleRate = int.MaxValue; } },
        { "adaptive off", o => o.AdaptiveCaches = false },
    };

    [Theory]
    [MemberData(nameof(ExtremeValidOptions))]
    public void AnExtremeButValidOptionBuildsAPoolThatServesEveryTier(string name, Action<TieredMemoryPoolOptions> set)
    {
        var options = new TieredMemoryPoolOptions { EnableHugepages = false };
        set(options);
        using var pool = new TieredMemoryPool(options);
        foreach (int size in new[] { 1, 100, 1024, 3000, 4096, 16384, 100_000, 3 * 1024 * 1024 })
        {
            using System.Buffers.IMemoryOwner<byte> owner = pool.Rent(size);
            owner.Memory.Span.Fill(0x5A);
            Assert.True(owner.Memory.Length >= size, name);
        }

        pool.Trim();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal(8, statistics.Small.Rents + statistics.Medium.Rents + statistics.Large.Rents + statistics.Huge.Rents);
    }

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void AnInvalidOptionThrowsArgumentExceptionNamingIt(string option, Action<TieredMemoryPoolOptions> spoil)
    {
        var options = new TieredMemoryPoolOptions();
        spoil(options);
        var error = Assert.ThrowsAny<ArgumentException>(() => new TieredMemoryPool(options));
        Assert.Equal(option, error.ParamName);
        Assert.Contains(option, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void APinnedArrayPoolServesTheLargestBufferItAccepts()
    {
        // Every size it advertises can be rented: above 1.75 GiB one array would exceed Array.MaxLength, so such a
        // MaxBufferSize is refused when the pool is made, not by every rent of it later.
        const int largest = TieredMemoryPoolOptions.MaxPinnedArrayBufferSize;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, MaxBufferSize = largest });
        Assert.Equal(largest, pool.MaxBufferSize);
        using (System.Buffers.IMemoryOwner<byte> owner = pool.Rent(largest))
        {
            owner.Memory.Span[largest - 1] = 1;
            Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(owner.Memory, out _));
        }

        pool.Trim();
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    [Fact]
    public void NullOptionsThrowArgumentNull() =>
        Assert.Throws<ArgumentNullException>(() => new TieredMemoryPool(null!));

    [Fact]
    public void DefaultsAreTheDocumentedOnes()
    {
        var options = new TieredMemoryPoolOptions();
        Assert.Equal(16 * 1024, options.MmapThreshold);
        Assert.Equal(2 * 1024 * 1024, options.HugepageThreshold);
        Assert.True(options.EnableHugepages);
        Assert.Equal(1024 * 1024 * 1024, options.MaxBufferSize);
        Assert.False(options.UsePortableBackend);
        Assert.Equal(1024 * 1024 * 1024, TieredMemoryPool.Shared.MaxBufferSize);

        // The rest of the README's options table (the byte caps before a memory limit takes its share of them).
        Assert.True(options.AdaptiveCaches);
        Assert.Equal(64, options.RegionCacheMaxCount);
        Assert.Equal(64L * 1024 * 1024, options.RegionCacheMaxBytes);
        Assert.Equal(16, options.HugeRegionCacheMaxCount);
        Assert.Equal(256L * 1024 * 1024, options.HugeRegionCacheMaxBytes);
        Assert.Equal(128, options.ThreadCacheMaxBuffers);
        Assert.Equal(2 * 1024 * 1024, options.ThreadCacheMaxBytes);
        Assert.False(options.UsePinnedArrays);
        Assert.False(options.ReuseOwners);
        Assert.Equal("default", options.Name);
        Assert.Equal(TimeSpan.FromSeconds(10), options.IdleReleaseDelay);
        Assert.False(options.UseLazyFree);
        Assert.Equal(512L * 1024 * 1024, options.MaxRetainedBytes);
        Assert.Equal(0, options.MaxBytesInUse);
        Assert.Equal(DiagnosticLevel.Off, options.Diagnostics);
        Assert.Equal(128, options.DiagnosticSampleRate);
        Assert.Same(TimeProvider.System, options.TimeProvider);
    }

    [Fact]
    public void ThePoolKeepsItsOwnCopyOfTheOptions()
    {
        var options = new TieredMemoryPoolOptions { MaxBufferSize = 64 * 1024 * 1024 };
        using var pool = new TieredMemoryPool(options);
        options.MaxBufferSize = 4096;
        Assert.Equal(64 * 1024 * 1024, pool.MaxBufferSize);
    }

    [Fact]
    public void CustomThresholdsMoveTheTierBoundaries()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MmapThreshold = 4096, HugepageThreshold = 64 * 1024, MaxBufferSize = 1024 * 1024 });
        pool.Rent(4096).Dispose();
        pool.Rent(4097).Dispose();
        pool.Rent(64 * 1024).Dispose();
        pool.Rent((64 * 1024) + 1).Dispose();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.Medium.Rents);
        Assert.Equal(2, statistics.Large.Rents);
        Assert.Equal(1, statistics.Huge.Rents);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent((1024 * 1024) + 1));
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(5000)]
    public void MaxBufferSizeBelowTheMmapThresholdHoldsOnTheMediumFastPath(int maxBufferSize)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { MaxBufferSize = maxBufferSize });
        pool.Rent(maxBufferSize).Dispose();
        foreach (int size in new[] { maxBufferSize + 1, 8192, 16 * 1024 })
        {
            ArgumentOutOfRangeException error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(size));
            Assert.Equal("minBufferSize", error.ParamName);
        }

        Assert.Equal(1, pool.GetStatistics().Medium.Rents);
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }

    public static TheoryData<TimeSpan> VeryLongDelays => new() { TimeSpan.FromDays(200), TimeSpan.MaxValue, TimeSpan.FromDays(49.7) };

    [Theory]
    [MemberData(nameof(VeryLongDelays))]
    public void AVeryLongIdleDelayIsAcceptedAndKeepsMemoryForItsWholeLength(TimeSpan delay)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = delay, TimeProvider = time });
        pool.Rent(100_000).Dispose();
        pool.Rent(4096).Dispose();
        for (int hour = 0; hour < 48; hour++)
        {
            time.Advance(TimeSpan.FromHours(1));
        }

        // Two days of ticks later, nothing is idle long enough to go.
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.MunmapCalls);
        Assert.Equal(0, statistics.BytesAwaitingRelease);
        Assert.True(statistics.Large.BytesRetained > 0);
    }
}
