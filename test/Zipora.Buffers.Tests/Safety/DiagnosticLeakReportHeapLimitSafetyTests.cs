using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Diagnostic mode reports a leaked owner from the owner's finalizer, where an exception ends the process; a process
/// at its GC heap limit is where leaks pile up. The report must count the leak and never throw there.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class DiagnosticLeakReportHeapLimitSafetyTests
{
    /// <summary>
    /// The report the finalizer makes, made with the heap full (run directly: a finalizer run at the limit is not
    /// something a test can schedule). On the previous code it described the renting stack whether or not anyone
    /// listened, and the child ended with "Out of memory." when 16 leaked owners were finalized at the limit.
    /// </summary>
    [Fact]
    public void ALeakReportAtTheHeapLimitCountsTheLeakAndNeverThrows()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(DiagnosticLeakReportHeapLimitSafetyTests), nameof(ALeakReportAtTheHeapLimitCountsTheLeakAndNeverThrows)))
        {
            return;
        }

        PoolDiagnostics diagnostics = PoolDiagnostics.Create(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All })!;
        var rentedAt = new StackTrace(fNeedFileInfo: true);
        var filler = new List<byte[]>(400_000);
        long failures = BackgroundFailures.Count;

        // Each call made once with room: at the limit the runtime may fail to compile a method at its first call (the
        // owner's finalizer guards that call), and the report's own code is what this test is about.
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            () => PoolDiagnostics.Create(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All })!.ReportLeak("medium", 4096, rentedAt),
            () => diagnostics.ReportLeak("medium", 4096, rentedAt),
            filler);
        filler.Clear();
        GC.Collect();

        // A collection at the limit may have made the pressure watcher's own read run out of memory (reported, skipped).
        BackgroundFailureWatch.ProvokedSince(failures);
        Assert.True(thrown is null, $"the leak report threw at the heap limit, which ends the process from a finalizer: {thrown}");
        Assert.Equal(1, diagnostics.Leaks);
    }
}
