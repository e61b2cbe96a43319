namespace Zipora.Buffers.Tests;

/// <summary>The contract with <see cref="TieredMemoryPoolOptions.ReuseOwners"/>: the pooled manager itself is handed out, nothing allocated per rent.</summary>
public sealed class ReuseOwnersContractTests : MemoryPoolContractTests
{
    protected override bool OwnersAreReused => true;

    protected override TieredMemoryPoolOptions CreateOptions() => new() { ReuseOwners = true };
}
