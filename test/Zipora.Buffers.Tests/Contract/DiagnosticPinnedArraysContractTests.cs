namespace Zipora.Buffers.Tests;

/// <summary>
/// The contract of the pool Kestrel gets (pinned arrays) with diagnostics switched on, as
/// <c>ZIPORA_BUFFERS_DIAGNOSTICS</c> does without a rebuild: every buffer must still be an array segment, or Kestrel's
/// socket transport throws ("Buffer backed by array was expected").
/// </summary>
public sealed class DiagnosticPinnedArraysContractTests : MemoryPoolContractTests
{
    protected override bool ArrayBacked => true;

    /// <summary>Not measured: an owner with its stack traces per rent, by design.</summary>
    protected override long BytesAllocatedPerRent => -1;

    protected override TieredMemoryPoolOptions CreateOptions() => new() { UsePinnedArrays = true, Diagnostics = DiagnosticLevel.Sampled };
}
