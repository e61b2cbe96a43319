namespace Zipora.Buffers.Native;

/// <summary>Access allowed to a mapped range.</summary>
public enum PageProtection
{
    /// <summary>Any access faults: a guard page.</summary>
    None,

    /// <summary>Ordinary read and write access.</summary>
    ReadWrite,
}
