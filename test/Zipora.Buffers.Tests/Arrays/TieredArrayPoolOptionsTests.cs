using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

public sealed class TieredArrayPoolOptionsTests
{
    public static TheoryData<string, Action<TieredArrayPoolOptions>> InvalidOptions => new()
    {
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = 15 },
        { nameof(TieredArrayPoolOptions.MaxArrayLength), options => options.MaxArrayLength = (1 << 30) + 1 },
        { nameof(TieredArrayPoolOptions.ThreadCacheMaxArrays), options => options.ThreadCacheMaxArrays = -1 },
        { nameof(TieredArrayPoolOptions.ThreadCacheMaxBytesPerClass), options => options.ThreadCacheMaxBytesPerClass = -1 },
        { nameof(TieredArrayPoolOptions.SharedCacheMaxBytes), options => options.SharedCacheMaxBytes = -1 },
        { nameof(TieredArrayPoolOptions.PinnedThreshold), options => options.PinnedThreshold = -1 },
        { nameof(TieredArrayPoolOptions.IdleReleaseDelay), options => options.IdleReleaseDelay = TimeSpan.Zero },
        { nameof(TieredArrayPoolOptions.Name), options => options.Name = " " },
        { nameof(TieredArrayPoolOptions.TimeProvider), options => options.TimeProvider = null! },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void AnInvalidOptionThrowsArgumentExceptionNamingIt(string option, Action<TieredArrayPoolOptions> spoil)
    {
        var options = new TieredArrayPoolOptions();
        spoil(options);

        ArgumentException error = Assert.ThrowsAny<ArgumentException>(() => new TieredArrayPool(options));
        Assert.Equal(option, error.ParamName);
    }

    [Fact]
    public void NullOptionsThrowArgumentNull() =>
        Assert.Throws<ArgumentNullException>(() => new TieredArrayPool(null!));

    [Fact]
    public void TheDefaultsAreTheDocumentedOnes()
    {
        var options = new TieredArrayPoolOptions();
        Assert.Equal(1 << 30, options.MaxArrayLength);
        Assert.Equal(128, options.ThreadCacheMaxArrays);
        Assert.Equal(4 * 1024 * 1024, options.ThreadCacheMaxBytesPerClass);
        Assert.Equal(1L << 30, options.SharedCacheMaxBytes);
        Assert.Equal(16 * 1024, options.PinnedThreshold);
        Assert.Equal(TimeSpan.FromSeconds(10), options.IdleReleaseDelay);
        Assert.Same(TimeProvider.System, options.TimeProvider);
        Assert.Equal("arrays", options.Name);
    }

    [Fact]
    public void AnInfiniteDelayTurnsIdleReleaseOffButTrimStillWorks()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = Timeout.InfiniteTimeSpan });
        pool.Return(pool.Rent(100));
        Assert.Equal(128, pool.GetStatistics().BytesRetained);
        pool.Trim();
        Assert.Equal(0, pool.GetStatistics().BytesRetained);
    }

    [Fact]
    public void TheSharedPoolIsOneInstance() => Assert.Same(TieredArrayPool.Shared, TieredArrayPool.Shared);
}
