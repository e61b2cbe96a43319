namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Running in containers: a pool sizes itself from the cgroup's limit, "else the GC's heap hard limit when one
/// is set", and "<c>GetStatistics()</c> reports <c>MemoryLimit</c> (the limit found, 0 for none), <c>RetainedBytesCap</c>
/// (the idle cap in force)". No test read <c>MemoryLimit</c> (reporting 0 passed every test), and the derived caps were
/// checked only on a budget made up in the test (<see cref="MemoryBudgetTests"/>), never in a process that has a limit.
/// </summary>
/// <remarks>
/// Runs in a child process with a 256 MB GC heap hard limit. Where the machine puts the tests in a limited memory
/// cgroup, the cgroup's limit is the one found, so the test expects that one.
/// </remarks>
public sealed class ReportedMemoryLimitTests
{
    private const long HeapHardLimit = IsolatedProcess.ContainerHeapLimit;
    private const long StandardMaxRetainedBytes = 512L * 1024 * 1024;

    [Fact]
    public void AProcessWithAHeapHardLimitReportsItAndGetsAnEighthOfItAsItsIdleCap()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(ReportedMemoryLimitTests), nameof(AProcessWithAHeapHardLimitReportsItAndGetsAnEighthOfItAsItsIdleCap), ("DOTNET_GCHeapHardLimit", $"0x{HeapHardLimit:x}")))
        {
            return;
        }

        // The cgroup's limit as the pool reads it (0 for none): the one part of the expectation this test cannot set.
        long cgroupLimit = MemoryBudget.Current.CgroupCharge().Limit;
        long expected = cgroupLimit > 0 ? cgroupLimit : HeapHardLimit;
        using var pool = new TieredMemoryPool();
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(expected, statistics.MemoryLimit);
        Assert.Equal(System.Math.Min(StandardMaxRetainedBytes, expected / 8), statistics.RetainedBytesCap);
    }
}
