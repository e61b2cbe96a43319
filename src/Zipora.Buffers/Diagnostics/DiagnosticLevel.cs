namespace Zipora.Buffers;

/// <summary>How much misuse checking a <see cref="TieredMemoryPool"/> does (see <see cref="TieredMemoryPoolOptions.Diagnostics"/>).</summary>
public enum DiagnosticLevel
{
    /// <summary>No checking: owners are reused, the fast path is as short as it gets. Leaked owners are still reclaimed.</summary>
    Off,

    /// <summary>
    /// A fresh owner per rent (a stale owner or Memory of an earlier rent throws), returned memory poisoned, guard
    /// pages around large and huge buffers, double disposes and leaks reported; the renting and first disposing stacks
    /// are captured for one rent in <see cref="TieredMemoryPoolOptions.DiagnosticSampleRate"/> (a second dispose's
    /// stack always).
    /// </summary>
    Sampled,

    /// <summary>As <see cref="Sampled"/>, capturing the renting and disposing stacks of every rent.</summary>
    All,
}
