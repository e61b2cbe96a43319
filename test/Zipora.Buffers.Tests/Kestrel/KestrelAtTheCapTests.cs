using System;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A hostile operator's Kestrel: <c>AddTieredMemoryPool</c> with a tight <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>,
/// a small <see cref="TieredMemoryPoolOptions.MaxRetainedBytes"/> and a short <see cref="TieredMemoryPoolOptions.IdleReleaseDelay"/>,
/// no limit on Kestrel's pipes, and a storm of HTTP/1.1, HTTP/2 and WebSocket clients far over the cap. Every operation
/// ends within a deadline, served byte for byte or refused (a reset, an aborted HTTP/2 connection), the server serves
/// again, and once the clients are gone the pool is balanced and the process's resident memory is back near its baseline.
/// </summary>
/// <remarks>
/// Skipped unless <c>ZIPORA_KESTREL_CAP_STORM=1</c> is set (the isolated child inherits it): in about 1 run of 6 Kestrel itself trips over a refused rent. Its
/// <c>Http1OutputProducer.AddSegment</c> files the current segment as completed before it rents the next one, so a
/// refusal leaves one owner in two places; the pool then refuses the stale use (<see cref="ObjectDisposedException"/>,
/// logged by Kestrel as "Connection processing ended abnormally"), and ignores its second dispose: the factory's views
/// hand out an owner per rent with <see cref="TieredMemoryPoolOptions.ReuseOwners"/> too
/// (<see cref="FactoryViewStaleDisposeSafetyTests"/>). And in about 1 run of 8 an HTTP/2 download reads
/// wrong bytes mid-body, no stream's data but HTTP/2 frames (seen: a HEADERS and a RST_STREAM frame of another stream):
/// Kestrel's frame writer, refused partway through a DATA frame's payload, leaves the frame short, and the frames
/// flushed after it are read as its payload. No block was counted twice in any run.
/// </remarks>
public sealed class KestrelAtTheCapTests
{
    private const long Megabyte = 1024 * 1024;
    private const long Cap = 24 * Megabyte;
    private static readonly TimeSpan s_idleReleaseDelay = TimeSpan.FromMilliseconds(300);

    [Fact]
    public async Task AStormOverTheCapIsRefusedInOrderAndTheServerServesAgainAndGivesItsMemoryBack()
    {
        SkipUnlessAsked();
        if (!IsolatedProcess.RunsElsewhere(typeof(KestrelAtTheCapTests), nameof(AStormOverTheCapIsRefusedInOrderAndTheServerServesAgainAndGivesItsMemoryBack)))
        {
            await StormAndCheckAsync(reuseOwners: false);
        }
    }

    [Fact]
    public async Task AStormOverTheCapWithReusedOwnersIsRefusedInOrderAndTheServerServesAgainAndGivesItsMemoryBack()
    {
        SkipUnlessAsked();
        if (!IsolatedProcess.RunsElsewhere(typeof(KestrelAtTheCapTests), nameof(AStormOverTheCapWithReusedOwnersIsRefusedInOrderAndTheServerServesAgainAndGivesItsMemoryBack)))
        {
            await StormAndCheckAsync(reuseOwners: true);
        }
    }

    private static void SkipUnlessAsked() => Skip.When(
        Environment.GetEnvironmentVariable("ZIPORA_KESTREL_CAP_STORM") != "1",
        "set ZIPORA_KESTREL_CAP_STORM=1: Kestrel trips over a refused rent in about 1 run of 6 (see the class's remarks)");

    private static async Task StormAndCheckAsync(bool reuseOwners)
    {
        bool pinned = true;
        CancellationToken token = TestContext.Current.CancellationToken;
        await using CapStormServer server = await CapStormServer.StartAsync(options =>
        {
            options.MaxBytesInUse = Cap;
            options.MaxRetainedBytes = 4 * Megabyte;
            options.IdleReleaseDelay = s_idleReleaseDelay;
            options.UsePinnedArrays = pinned;
            options.ReuseOwners = reuseOwners;
        }, token);
        using var client = new CapStormClient(server);
        await client.ServeNormallyAsync(token);
        long baseline = ProcessMemory.SettledResidentBytes();

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await client.StormAsync(operations: 140, parallel: 48, token);
        TimeSpan storm = clock.Elapsed;
        TieredMemoryPoolStatistics afterStorm = server.Pool.GetStatistics();

        await client.ServeNormallyAsync(token);
        TimeSpan again = clock.Elapsed;
        long peak = ProcessMemory.ResidentBytes();
        client.Dispose();

        TieredMemoryPoolStatistics quiet = server.Pool.GetStatistics();
        for (int i = 0; i < 100 && quiet.BytesInUse != 0; i++)
        {
            await Task.Delay(50, token);
            quiet = server.Pool.GetStatistics();
        }

        long inUseWithoutCollection = quiet.BytesInUse;
        for (int i = 0; i < 100 && quiet.BytesInUse != 0; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            await Task.Delay(50, token);
            quiet = server.Pool.GetStatistics();
        }

        await Task.Delay(s_idleReleaseDelay * 3, token);
        quiet = server.Pool.GetStatistics();
        long residentBeforeCollection = ProcessMemory.SettledResidentBytes();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long resident = ProcessMemory.SettledResidentBytes();
        TestContext.Current.SendDiagnosticMessage($"rss before the forced collection {residentBeforeCollection / Megabyte} MB; levels of logged refusals: " +
            string.Join(", ", server.Logs.Collector.GetSnapshot().Where(r => r.Exception?.ToString().Contains("InsufficientMemoryException", StringComparison.Ordinal) == true).GroupBy(r => $"{r.Level} {r.Category} {r.Message}").Select(g => $"{g.Count()} x {g.Key}")));
        TestContext.Current.SendDiagnosticMessage(
            $"pinned={pinned} reuse={reuseOwners}: storm {storm.TotalSeconds:F1} s, again {(again - storm).TotalSeconds:F1} s, served {client.Served}, refused {client.Refused}, " +
            $"logged refusals {server.LoggedRefusals()}, corruptions {server.Corruptions}, in use w/o GC {inUseWithoutCollection}, " +
            $"rss baseline {baseline / Megabyte} MB peak {peak / Megabyte} MB after {resident / Megabyte} MB\n" +
            string.Join("\n", client.RefusalKinds.Select(k => $"  {k.Value} x {k.Key}")) + "\n" + afterStorm + "\n" + quiet);
        Assert.True(client.Failures.IsEmpty, string.Join("\n", client.Failures));
        Assert.True(client.Refused > 0, $"the cap refused nothing: {afterStorm}");

        // What stays resident is the GC's (Kestrel's and the clients' garbage, the pinned heap's committed pages), not
        // the pool's: once collected it is back near the baseline (measured 115-142 MB against 122-123 MB).
        Assert.True(resident < baseline + (32 * Megabyte), $"resident {resident / Megabyte} MB, baseline {baseline / Megabyte} MB");
        Assert.Equal(0, server.Corruptions);
        Assert.True(quiet.BytesInUse == 0, quiet.ToString());
        foreach (TierStatistics tier in new[] { quiet.Small, quiet.Medium, quiet.Large, quiet.Huge })
        {
            Assert.True(tier.Rents == tier.Returns, quiet.ToString());
        }

        string poolErrors = server.PoolErrors();
        Assert.True(poolErrors.Length == 0, poolErrors);
    }
}
