namespace Zipora.Buffers.Tests;

/// <summary>The contract with per-thread caches off (every medium buffer goes through the depot), one cached region per tier, and no hugepages.</summary>
public sealed class NoThreadCacheContractTests : MemoryPoolContractTests
{
    protected override TieredMemoryPoolOptions CreateOptions() => new()
    {
        ThreadCacheMaxBuffers = 0,
        RegionCacheMaxCount = 1,
        HugeRegionCacheMaxCount = 1,
        AdaptiveCaches = false,
        EnableHugepages = false,
    };
}
