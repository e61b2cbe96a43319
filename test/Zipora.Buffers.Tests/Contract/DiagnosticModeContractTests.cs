namespace Zipora.Buffers.Tests;

/// <summary>The contract in diagnostic mode: fresh owners, poisoning, guard pages, every renting stack captured.</summary>
public sealed class DiagnosticModeContractTests : MemoryPoolContractTests
{
    /// <summary>Not measured: an owner with its stack traces per rent, by design.</summary>
    protected override long BytesAllocatedPerRent => -1;

    protected override TieredMemoryPoolOptions CreateOptions() => new() { Diagnostics = DiagnosticLevel.All };
}
