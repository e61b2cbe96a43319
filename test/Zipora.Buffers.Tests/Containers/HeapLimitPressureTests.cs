using System;
using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README: managed memory is short when the GC's committed heap reaches 75% of what the GC may use (its heap hard limit). The
/// pinned arrays of a Kestrel pool count against that limit, and a heap that reaches it fails with "Out of memory"
/// while the container's charge and the GC's memory load (the machine's, or the container's) are far from theirs.
/// </summary>
public sealed class HeapLimitPressureTests
{
    private const int Megabyte = 1024 * 1024;

    [Fact]
    public void ManagedMemoryIsShortOnceTheCommittedHeapReaches75PercentOfTheGcHeapHardLimit()
    {
        if (IsolatedProcess.RunsElsewhere(
            typeof(HeapLimitPressureTests),
            nameof(ManagedMemoryIsShortOnceTheCommittedHeapReaches75PercentOfTheGcHeapHardLimit),
            ("DOTNET_GCHeapHardLimit", $"0x{IsolatedProcess.ContainerHeapLimit:x}"),
            ("DOTNET_gcServer", "0")))
        {
            return;
        }

        GC.Collect();
        GCMemoryInfo info = GC.GetGCMemoryInfo();
        Assert.Equal(IsolatedProcess.ContainerHeapLimit, info.TotalAvailableMemoryBytes);
        Skip.When(info.MemoryLoadBytes >= info.HighMemoryLoadThresholdBytes * 0.9, "the GC reports high memory load on this machine, which is pressure whatever the heap holds");
        Skip.When(info.TotalCommittedBytes >= info.TotalAvailableMemoryBytes / 2, "the runner's own heap is half the limit already");

        // A budget of its own for each reading: the process's shares its readings for 50 ms.
        Assert.False(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: true));

        // Live arrays up to 80% of the limit, seen by the GC as committed at its last collection.
        var live = new List<byte[]>();
        while (info.TotalCommittedBytes < info.TotalAvailableMemoryBytes * 0.8)
        {
            for (int i = 0; i < 8; i++)
            {
                live.Add(new byte[Megabyte]);
            }

            GC.Collect();
            info = GC.GetGCMemoryInfo();
        }

        Assert.True(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: true), $"committed {info.TotalCommittedBytes} of {info.TotalAvailableMemoryBytes}");

        // Not for native memory, which is not in the heap (ManagedHeapPressureTests).
        Assert.False(MemoryBudget.ForLimit(0).IsUnderPressure(managedMemory: false), $"committed {info.TotalCommittedBytes} of {info.TotalAvailableMemoryBytes}");
        GC.KeepAlive(live);
    }
}
