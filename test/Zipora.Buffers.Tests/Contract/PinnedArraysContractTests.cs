namespace Zipora.Buffers.Tests;

/// <summary>The contract with pages from pinned arrays, the backend Kestrel needs: every buffer is also an array segment.</summary>
public sealed class PinnedArraysContractTests : MemoryPoolContractTests
{
    protected override bool ArrayBacked => true;

    protected override TieredMemoryPoolOptions CreateOptions() => new() { UsePinnedArrays = true };
}
