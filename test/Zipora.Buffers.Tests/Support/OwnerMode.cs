namespace Zipora.Buffers.Tests;

/// <summary>The owner-handling configurations the safety tests run under.</summary>
public enum OwnerMode
{
    /// <summary><c>new TieredMemoryPoolOptions()</c>: a fresh owner per rent.</summary>
    Default,

    /// <summary><see cref="TieredMemoryPoolOptions.ReuseOwners"/>: the pooled block's own owner, again and again.</summary>
    ReuseOwners,

    /// <summary><see cref="TieredMemoryPoolOptions.UsePinnedArrays"/>: every page from the pinned object heap.</summary>
    PinnedArrays,

    /// <summary><see cref="TieredMemoryPoolOptions.Diagnostics"/> = <see cref="DiagnosticLevel.All"/>.</summary>
    DiagnosticsAll,
}
