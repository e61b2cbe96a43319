using System;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The mapping check the suite runs with (see <see cref="MappingLedger"/>): it lets every call on live memory through,
/// cut mappings included, and stops the process before a call on memory already unmapped. The stopping cases run in
/// a child process, which must die with the check's message.
/// </summary>
public sealed class MappingLedgerTests
{
    private static readonly nuint s_page = PageAllocator.PageSize;

    [Fact]
    public void TheSuiteRunsWithTheCheckOn() => Assert.True(MappingLedger.IsEnabled, "the test project's runtimeconfig should set Zipora.Buffers.Native.VerifyMappings");

    [Fact]
    public void CallsOnWhatIsLeftOfACutMappingGoThrough()
    {
        Skip.Unless(OperatingSystem.IsLinux(), "the check sits in the mmap allocator's calls, which this test makes on Linux");
        Assert.True(PageAllocator.Default.TryMap(3 * s_page, s_page, PageKind.Normal, out nint address));

        // The middle page goes: the first and the last stay live mappings of their own.
        Assert.True(PageAllocator.Default.Unmap(address + (nint)s_page, s_page));
        Assert.True(PageAllocator.Default.TryAdvise(address, s_page, PageAdvice.DontNeed));
        Assert.True(PageAllocator.Default.TryProtect(address + (nint)(2 * s_page), s_page, PageProtection.ReadWrite));
        Assert.True(PageAllocator.Default.Unmap(address, s_page));
        Assert.True(PageAllocator.Default.Unmap(address + (nint)(2 * s_page), s_page));

        // Unmapped whole, the range can be mapped again and is recorded afresh.
        Assert.True(PageAllocator.Default.TryMap(s_page, s_page, PageKind.Normal, out nint again));
        Assert.True(PageAllocator.Default.Unmap(again, s_page));
    }

    [Fact]
    public void ASecondUnmapOfAMappingStopsTheProcessBeforeItRuns()
    {
        if (IsolatedProcess.IsChildFor(GetType(), nameof(ASecondUnmapOfAMappingStopsTheProcessBeforeItRuns)))
        {
            Assert.True(PageAllocator.Default.TryMap(s_page, s_page, PageKind.Normal, out nint address));
            Assert.True(PageAllocator.Default.Unmap(address, s_page));
            _ = PageAllocator.Default.Unmap(address, s_page);
            return;
        }

        AssertTheChildWasStopped(nameof(ASecondUnmapOfAMappingStopsTheProcessBeforeItRuns), "munmap(0x");
    }

    [Fact]
    public void DroppingThePagesOfAnUnmappedRangeStopsTheProcessBeforeItRuns()
    {
        if (IsolatedProcess.IsChildFor(GetType(), nameof(DroppingThePagesOfAnUnmappedRangeStopsTheProcessBeforeItRuns)))
        {
            Assert.True(PageAllocator.Default.TryMap(2 * s_page, s_page, PageKind.Normal, out nint address));
            Assert.True(PageAllocator.Default.Unmap(address + (nint)s_page, s_page));
            // Reaches one page past what is still mapped.
            _ = PageAllocator.Default.TryAdvise(address, 2 * s_page, PageAdvice.DontNeed);
            return;
        }

        AssertTheChildWasStopped(nameof(DroppingThePagesOfAnUnmappedRangeStopsTheProcessBeforeItRuns), "madvise(0x");
    }

    private void AssertTheChildWasStopped(string method, string call)
    {
        Skip.Unless(OperatingSystem.IsLinux(), "the check sits in the mmap allocator's calls, which this test makes on Linux");
        (int exitCode, string output) = IsolatedProcess.Run(GetType(), method);
        Assert.True(exitCode != 0, $"the child should have been stopped:\n{output}");
        Assert.Contains($"Zipora.Buffers mapping check: {call}", output, StringComparison.Ordinal);
        Assert.Contains("not inside one live mapping", output, StringComparison.Ordinal);
        Assert.Contains(method, output, StringComparison.Ordinal);
    }
}
