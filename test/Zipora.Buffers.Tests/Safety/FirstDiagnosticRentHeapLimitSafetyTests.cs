using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A process whose first diagnostic rent comes at the GC heap limit: the runtime compiles the method that makes the
/// diagnostic owner at its first call, and at the limit that compilation can fail, before the method's own guard (which
/// gives the block back when its owner cannot be made) is reached. The rent may throw; it must take nothing. Noted as a
/// risk at an earlier stop; on this runtime the compilation at the limit succeeded (3 of 3 runs: the owner's own
/// allocation is what failed, inside the guard), and the test holds that.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class FirstDiagnosticRentHeapLimitSafetyTests
{
    [Fact]
    public void AProcesssFirstDiagnosticRentAtTheHeapLimitTakesNoBlock()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(FirstDiagnosticRentHeapLimitSafetyTests), nameof(AProcesssFirstDiagnosticRentAtTheHeapLimitTakesNoBlock)))
        {
            return;
        }

        // The tier's own rent compiled with room, through a pool that makes no diagnostic owner.
        using (var plain = new TieredMemoryPool())
        {
            plain.Rent(4096).Dispose();
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All });
        var crumbs = new List<object>(1 << 20);
        long failures = BackgroundFailures.Count;
        IMemoryOwner<byte>? rented = null;
        OutOfMemoryException? thrown = HeapFiller.OutOfMemoryFrom(() =>
        {
            FillWithObjects(crumbs);
            rented = pool.Rent(4096);
        });
        crumbs.Clear();
        BackgroundFailureWatch.ProvokedSince(failures);
        rented?.Dispose();
        Assert.True(thrown is not null, "the first diagnostic rent with the heap full never ran out of memory: the case tests nothing");

        SafetyCases.CollectEverything();
        TieredMemoryPoolStatistics after = pool.GetStatistics();
        Assert.True(after.BytesInUse == 0, $"the first diagnostic rent ran out of managed memory ({thrown!.Message} at {thrown.StackTrace?.Split('\n')[0].Trim()}) with {after.BytesInUse} bytes counted in use, held by nobody\n{after}");
        Assert.True(after.LeaksReclaimed == 0 && after.BytesQuarantined == 0, $"the block the failed rent took was reclaimed as a leak\n{after}");
    }

    private static void FillWithObjects(List<object> crumbs)
    {
        try
        {
            while (crumbs.Count < crumbs.Capacity)
            {
                crumbs.Add(new object());
            }
        }
        catch (OutOfMemoryException)
        {
            // Full: not even the smallest object fits.
        }
    }
}
