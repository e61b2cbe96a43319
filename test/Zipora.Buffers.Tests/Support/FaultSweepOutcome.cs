using System.Collections.Generic;

namespace Zipora.Buffers.Tests;

/// <summary>What one run of the fault sweep's script saw: the allocator's calls by kind, whether and where the fault landed, the cap's rents, and every problem found.</summary>
internal sealed class FaultSweepOutcome
{
    public int[] Calls = new int[4];
    public bool Injected;
    public string? InjectedAt;
    public int CapRents;
    public int LiveAfterTrim;
    public List<string> Problems { get; } = [];
}
