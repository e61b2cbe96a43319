using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Where the kernel cannot fault a hugetlb mapping in with an error (before Linux 5.14), reserved hugepages are used
/// only if no hugetlb cgroup limit applies to the process: read from <c>cgroup</c> and <c>mountinfo</c> files and the
/// limit files of the process's cgroup and its ancestors, for the page size asked for, in both cgroup versions.
/// </summary>
public sealed class HugetlbCgroupLimitTests
{
    [Theory]
    [InlineData("max", false)]
    [InlineData("0", true)]
    [InlineData("4194304", true)]
    [InlineData("garbage", true)]
    public void TheVersion2LimitOfTheProcesssCgroupDecides(string limit, bool applies)
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("unified");
        files.Create("unified/pod/app");
        files.Write("unified/pod/app/hugetlb.2MB.max", limit + "\n");
        (string cgroup, string mountInfo) = Version2(files, mount, "/pod/app");

        Assert.Equal(applies, HugetlbCgroupLimit.Applies(PageKind.HugeTlb2MB, cgroup, mountInfo));
    }

    [Fact]
    public void AnAncestorsLimitAppliesAndEachPageSizeHasItsOwn()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("unified");
        files.Create("unified/pod/app");
        files.Write("unified/pod/hugetlb.2MB.max", "0\n");
        files.Write("unified/pod/app/hugetlb.2MB.max", "max\n");
        files.Write("unified/pod/app/hugetlb.1GB.max", "max\n");
        (string cgroup, string mountInfo) = Version2(files, mount, "/pod/app");

        Assert.True(HugetlbCgroupLimit.Applies(PageKind.HugeTlb2MB, cgroup, mountInfo), "the pod's 0 limits its container");
        Assert.False(HugetlbCgroupLimit.Applies(PageKind.HugeTlb1GB, cgroup, mountInfo), "no 1 GB limit anywhere");
    }

    [Theory]
    [InlineData("9223372036854771712", false)]
    [InlineData("0", true)]
    public void TheVersion1HierarchyThatMountsTheControllerIsRead(string limit, bool applies)
    {
        using var files = new TemporaryFiles();
        string hugetlb = files.Create("hugetlb");
        string unified = files.Create("unified");
        files.Create("hugetlb/docker/abc");
        files.Write("hugetlb/docker/abc/hugetlb.2MB.limit_in_bytes", limit + "\n");
        files.Create("unified/docker/abc");
        files.Write("unified/docker/abc/hugetlb.2MB.max", "0\n");
        string cgroup = files.Write("cgroup", "12:hugetlb:/docker/abc\n0::/docker/abc\n");
        string mountInfo = files.Write(
            "mountinfo",
            $"40 30 0:40 / {hugetlb} rw - cgroup cgroup rw,hugetlb\n41 30 0:41 / {unified} rw - cgroup2 cgroup2 rw\n");

        Assert.Equal(applies, HugetlbCgroupLimit.Applies(PageKind.HugeTlb2MB, cgroup, mountInfo));
    }

    [Fact]
    public void NoHugetlbControllerAndNoLimitFileMeanNoLimit()
    {
        using var files = new TemporaryFiles();
        string mount = files.Create("unified");
        files.Create("unified/app");
        (string cgroup, string mountInfo) = Version2(files, mount, "/app");
        Assert.False(HugetlbCgroupLimit.Applies(PageKind.HugeTlb2MB, cgroup, mountInfo), "a cgroup without the controller's files");

        string memoryOnly = files.Write("cgroup-v1", "4:memory:/app\n");
        string memoryMount = files.Create("memory");
        string memoryInfo = files.Write("mountinfo-v1", $"40 30 0:40 / {memoryMount} rw - cgroup cgroup rw,memory\n");
        Assert.False(HugetlbCgroupLimit.Applies(PageKind.HugeTlb2MB, memoryOnly, memoryInfo), "no hierarchy with the hugetlb controller");
    }

    private static (string Cgroup, string MountInfo) Version2(TemporaryFiles files, string mount, string path) =>
        (files.Write("cgroup", $"0::{path}\n"), files.Write("mountinfo", $"41 30 0:41 / {mount} rw - cgroup2 cgroup2 rw\n"));
}
