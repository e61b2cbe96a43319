namespace Zipora.Buffers.Tests;

/// <summary>The contract in diagnostic mode: fresh owners, poisoning, guard pages, every renting stack captured.</summary>
public sealed class DiagnosticModeContractTests : MemoryPoolContractTests
{
    protected override bool HandsOutPooledManagers => false;

    protected override TieredMemoryPoolOptions CreateOptions() => new() { Diagnostics = DiagnosticLevel.All };
}
