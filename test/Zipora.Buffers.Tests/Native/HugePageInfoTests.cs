using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

public sealed class HugePageInfoTests
{
    [Theory]
    [InlineData("always [madvise] never", TransparentHugePageMode.Madvise)]
    [InlineData("[always] madvise never", TransparentHugePageMode.Always)]
    [InlineData("always madvise [never]", TransparentHugePageMode.Never)]
    [InlineData("", TransparentHugePageMode.Unsupported)]
    [InlineData("madvise", TransparentHugePageMode.Unsupported)]
    public void TheBracketedChoiceIsTheMode(string setting, TransparentHugePageMode mode) =>
        Assert.Equal(mode, HugePageInfo.ParseTransparentMode(setting));

    [Fact]
    public void ReadingTheMachineGivesConsistentCounts()
    {
        HugePageInfo info = HugePageInfo.Read();
        Assert.InRange(info.Free2MBPages, 0, info.Total2MBPages);
        Assert.InRange(info.Free1GBPages, 0, info.Total1GBPages);
        Assert.True(info.AnonHugePageBytes >= 0);
        if (System.OperatingSystem.IsLinux() && System.IO.File.Exists("/sys/kernel/mm/transparent_hugepage/enabled"))
        {
            Assert.NotEqual(TransparentHugePageMode.Unsupported, info.TransparentMode);
        }
    }
}
