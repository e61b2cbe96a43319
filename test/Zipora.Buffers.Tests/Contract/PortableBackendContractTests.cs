namespace Zipora.Buffers.Tests;

/// <summary>The contract with every page taken from the portable aligned-heap backend.</summary>
public sealed class PortableBackendContractTests : MemoryPoolContractTests
{
    protected override TieredMemoryPoolOptions CreateOptions() => new() { UsePortableBackend = true };
}
