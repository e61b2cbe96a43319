using System;
using System.IO;

namespace Zipora.Buffers.Native;

/// <summary>
/// Whether a hugetlb cgroup limit applies to the process: the hugetlb controller charges a reserved hugepage when it is
/// faulted, so under a limit a touch can be refused with a SIGBUS. Read only where the kernel cannot fault a mapping in
/// with an error instead (MADV_POPULATE_WRITE, before Linux 5.14).
/// </summary>
internal static class HugetlbCgroupLimit
{
    /// <summary>Whether the process's hugetlb cgroup, or an ancestor, limits the pages of <paramref name="kind"/>.</summary>
    public static bool Applies(PageKind kind) => Applies(kind, "/proc/self/cgroup", "/proc/self/mountinfo");

    /// <summary>
    /// <see cref="Applies(PageKind)"/> for the process the given <c>cgroup</c> and <c>mountinfo</c> files describe
    /// (tests point them elsewhere). A limit file that exists but cannot be read counts as a limit: it cannot be shown
    /// not to be one.
    /// </summary>
    internal static bool Applies(PageKind kind, string cgroupFile, string mountInfoFile)
    {
        if (CgroupDirectory.Find("hugetlb", cgroupFile, mountInfoFile) is not { } cgroup)
        {
            // No hugetlb controller over the process: nothing charges its faults.
            return false;
        }

        string size = kind == PageKind.HugeTlb1GB ? "1GB" : "2MB";
        string name = cgroup.IsVersion1 ? $"hugetlb.{size}.limit_in_bytes" : $"hugetlb.{size}.max";
        try
        {
            foreach (string directory in cgroup.UpToMountPoint())
            {
                string file = Path.Join(directory, name);
                if (File.Exists(file) && (!CgroupDirectory.TryReadNumber(file, out long limit) || limit < CgroupDirectory.Unlimited))
                {
                    return true;
                }
            }

            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }
}
