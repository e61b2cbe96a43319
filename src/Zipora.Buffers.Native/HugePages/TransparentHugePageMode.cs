namespace Zipora.Buffers.Native;

/// <summary>The system's transparent hugepage policy (<c>/sys/kernel/mm/transparent_hugepage/enabled</c>).</summary>
public enum TransparentHugePageMode
{
    /// <summary>The OS has no transparent hugepages, or the setting could not be read.</summary>
    Unsupported,

    /// <summary>Transparent hugepages are switched off.</summary>
    Never,

    /// <summary>Only ranges advised with <see cref="PageAdvice.HugePage"/> get transparent hugepages.</summary>
    Madvise,

    /// <summary>Every large enough anonymous mapping may get transparent hugepages.</summary>
    Always,
}
