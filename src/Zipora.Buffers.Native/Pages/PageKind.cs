namespace Zipora.Buffers.Native;

/// <summary>Which pages back a mapping.</summary>
public enum PageKind
{
    /// <summary>The system's base pages (4 KB on x64 Linux). Transparent hugepages are asked for with <see cref="PageAdvice.HugePage"/>.</summary>
    Normal,

    /// <summary>
    /// Reserved 2 MB hugepages (Linux <c>MAP_HUGETLB | MAP_HUGE_2MB</c>), faulted in whole by the map; fails when none
    /// are free, when they cannot all be faulted in (a hugetlb cgroup limit), or before Linux 5.14.
    /// </summary>
    HugeTlb2MB,

    /// <summary>Reserved 1 GB hugepages (Linux <c>MAP_HUGETLB | MAP_HUGE_1GB</c>), faulted in whole by the map; fails as <see cref="HugeTlb2MB"/> does.</summary>
    HugeTlb1GB,
}
