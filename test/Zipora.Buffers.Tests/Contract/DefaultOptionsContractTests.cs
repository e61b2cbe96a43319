namespace Zipora.Buffers.Tests;

/// <summary>The contract with default options: the OS's virtual memory backend, hugepages on.</summary>
public sealed class DefaultOptionsContractTests : MemoryPoolContractTests
{
    protected override TieredMemoryPoolOptions CreateOptions() => new();
}
