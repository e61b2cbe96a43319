using System;
using System.Buffers;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A return at the GC heap limit keeps its block in every owner mode, diagnostic mode included: there an owner's
/// dispose captures its stack (for the report of a later second dispose), which must not make the return itself fail.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class DiagnosticReturnHeapLimitSafetyTests
{
    private const int Owners = 32;

    [Fact]
    public void DisposesAtTheHeapLimitReturnEveryBlockAndASecondDisposeIsIgnored()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(DiagnosticReturnHeapLimitSafetyTests), nameof(DisposesAtTheHeapLimitReturnEveryBlockAndASecondDisposeIsIgnored)))
        {
            return;
        }

        // A medium block, and a large one between guard pages.
        DisposeAtTheHeapLimit(4096);
        DisposeAtTheHeapLimit(100_000);
    }

    private static void DisposeAtTheHeapLimit(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All });
        var owners = new List<IMemoryOwner<byte>>(Owners);
        var filler = new List<byte[]>(400_000);
        long failures = BackgroundFailures.Count;

        // Every call made once with room (the runtime compiles a method at its first call), then the same at the limit.
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            () =>
            {
                IMemoryOwner<byte> first = pool.Rent(size);
                first.Dispose();
                first.Dispose();
                for (int i = 0; i < Owners; i++)
                {
                    owners.Add(pool.Rent(size));
                }
            },
            () =>
            {
                foreach (IMemoryOwner<byte> owner in owners)
                {
                    owner.Dispose();
                    owner.Dispose();
                }
            },
            filler);
        filler.Clear();
        GC.Collect();

        BackgroundFailureWatch.ProvokedSince(failures);
        Assert.True(thrown is null, $"a dispose of a {size}-byte buffer at the heap limit threw: {thrown}");
        Assert.Equal(0, pool.GetStatistics().BytesInUse);
    }
}
