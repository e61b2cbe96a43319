namespace Zipora.Buffers.Native;

/// <summary>Hints about how a mapped range will be used (Linux <c>madvise</c>).</summary>
public enum PageAdvice
{
    /// <summary>Drop the pages now: resident memory falls at once and the next touch reads zeros.</summary>
    DontNeed,

    /// <summary>The kernel may take the pages lazily under memory pressure; resident memory does not fall at once.</summary>
    Free,

    /// <summary>Back the range with transparent hugepages (needs a 2 MB aligned range).</summary>
    HugePage,

    /// <summary>Do not back the range with transparent hugepages.</summary>
    NoHugePage,
}
