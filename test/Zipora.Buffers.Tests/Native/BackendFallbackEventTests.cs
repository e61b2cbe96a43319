using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Reliability, faults degrade: each step down to the next backend is "counted in <c>FallbackAllocations</c>,
/// reported once per kind as a <c>BackendFallback</c> event". Tests counted the fallbacks; none listened for the event:
/// with its report taken out, or written at every fallback (a flood on a machine that refuses every hugepage), every
/// test passed.
/// </summary>
/// <remarks>
/// The event names the step, not the pool, so the test runs alone (the collection is not run in parallel) to count
/// only its own pool's reports.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class BackendFallbackEventTests
{
    [Fact]
    public void ThreeRentsTheOSRefusedAreThreeFallbacksAndOneEvent()
    {
        using var recorder = new PoolEventRecorder();
        var refusing = new ScriptedPageAllocator { RefuseMap = static (_, _) => true };
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            PageAllocator = refusing,
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = SafetyCases.IdleDelay,
        });

        // Held at once, so each is a mapping of its own (none served from the region cache).
        var owners = new List<IMemoryOwner<byte>>();
        for (int i = 0; i < 3; i++)
        {
            owners.Add(pool.Rent(100_000));
        }

        Assert.True(pool.GetStatistics().FallbackAllocations >= 3, $"{pool.GetStatistics().FallbackAllocations} fallbacks counted for 3 refused maps");
        Assert.Single(recorder.Payloads("BackendFallback"), static payload => Equals(payload[0], "OSRefusedToPortable"));
        owners.ForEach(static owner => owner.Dispose());
    }
}
