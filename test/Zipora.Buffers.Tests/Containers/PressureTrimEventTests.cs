using System;
using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Running in containers, what an operator sees: "each pressure trim is also the <c>MemoryPressureTrim</c>
/// event (with the cgroup's usage and limit)". Many tests count the trims in <c>PressureTrims</c>; none listened for the
/// event: with its write taken out, every test passed, and an operator's only sign that the pool emptied itself under
/// pressure would have been gone.
/// </summary>
/// <remarks>
/// The trim is asked for directly, as the pressure watcher asks (other tests prove the watcher asks). Events are
/// process-wide and other tests' pools may trim meanwhile, so only the events naming this test's pool count.
/// </remarks>
public sealed class PressureTrimEventTests
{
    [Fact]
    public void EveryTrimThatRanIsReportedOnceWithThePoolsNameAndTheCgroupsFigures()
    {
        using var recorder = new PoolEventRecorder();
        string name = "pressure-event-" + Guid.NewGuid().ToString("N");
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = name, TimeProvider = new FakeTimeProvider() });
        var reclaimable = (IReclaimablePool)pool;

        // Something cached to give back, and pool activity before each trim, so each one is due (a trim with no use of
        // the pool since the last one rests, and is neither counted nor reported).
        for (int round = 0; round < 2; round++)
        {
            pool.Rent(4096).Dispose();
            pool.Rent(100_000).Dispose();
            reclaimable.TrimUnderPressure();
        }

        object?[][] events = [.. recorder.Payloads("MemoryPressureTrim").Where(payload => Equals(payload[0], pool.Name))];
        Assert.Equal(2, pool.GetStatistics().PressureTrims);
        Assert.Equal(2, events.Length);

        // Usage and limit are the cgroup's (0 and 0 outside a limited one): the limit does not move during the test.
        long limit = MemoryBudget.Current.CgroupCharge().Limit;
        foreach (object?[] payload in events)
        {
            long usage = Assert.IsType<long>(payload[1]);
            Assert.Equal(limit, Assert.IsType<long>(payload[2]));
            Assert.InRange(usage, 0, limit > 0 ? limit * 2 : long.MaxValue);
        }

        // A trim with nothing used since gave nothing more to give: no event, no count.
        reclaimable.TrimUnderPressure();
        Assert.Equal(2, recorder.Payloads("MemoryPressureTrim").Count(payload => Equals(payload[0], pool.Name)));
    }
}
