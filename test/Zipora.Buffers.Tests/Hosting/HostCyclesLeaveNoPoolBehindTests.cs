using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Kestrel apps on the tiered pool built, served and disposed one after another, as an integration test suite or a
/// process that restarts its host does: every cycle's pool must be collectable once its delay is over, and the
/// meter's list and the idle ticker's queue must come back to where they were.
/// </summary>
/// <remarks>Forces full garbage collections, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class HostCyclesLeaveNoPoolBehindTests
{
    private const int Cycles = 4;

    // Short, so the memory returned at shutdown has waited out its delay within the test's time box.
    private static readonly TimeSpan s_delay = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task DisposedHostsPoolsAreCollectedAndLeaveNoTimerOrMeterEntryBehind()
    {
        CancellationToken token = TestContext.Current.CancellationToken;

        // A first cycle warms Kestrel, the HTTP client and the JIT up, so the baseline counts what stays with them.
        _ = await ServeAndDisposeOneHost(token);
        Settle();
        int trackedBefore = PoolMetrics.TrackedPools;
        int scheduledBefore = IdleTicker.For(TimeProvider.System).Scheduled;
        long writableBefore = ProcessMappings.WritableBytes();
        int mapLinesBefore = MapLines();
        int threadsBefore = ThreadCount();

        var pools = new List<WeakReference>();
        for (int cycle = 0; cycle < Cycles; cycle++)
        {
            pools.Add(await ServeAndDisposeOneHost(token));
        }

        // A disposed pool is held by its releaser while memory returned at shutdown waits out its delay, then let go.
        var clock = Stopwatch.StartNew();
        while (pools.Any(static pool => pool.IsAlive) && clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            Settle();
            await Task.Delay(s_delay, token);
        }

        Settle();
        long writableAfter = ProcessMappings.WritableBytes();
        int mapLinesAfter = MapLines();
        int threadsAfter = ThreadCount();
        TestContext.Current.SendDiagnosticMessage(
            $"after {Cycles} host cycles: pools alive {pools.Count(static pool => pool.IsAlive)} after {clock.ElapsedMilliseconds} ms, " +
            $"tracked {trackedBefore}->{PoolMetrics.TrackedPools}, scheduled {scheduledBefore}->{IdleTicker.For(TimeProvider.System).Scheduled}, " +
            $"writable {writableBefore >> 10}->{writableAfter >> 10} KB, map lines {mapLinesBefore}->{mapLinesAfter}, threads {threadsBefore}->{threadsAfter}");

        Assert.All(pools, static pool => Assert.False(pool.IsAlive, "a disposed host's pool is still reachable"));
        Assert.InRange(PoolMetrics.TrackedPools, 0, trackedBefore);
        Assert.InRange(IdleTicker.For(TimeProvider.System).Scheduled, 0, scheduledBefore);

        // The process's mappings and threads are reported, not asserted: the thread pool and the GC's heaps grow and
        // shrink by tens of megabytes between reads on their own (32 cycles measured +4 threads, +53 MB writable, with no
        // pool alive); ProviderCyclesGiveNativeMemoryBackTests measures the pool's own memory, which is native.
    }

    /// <summary>Builds an app on the tiered pool, serves bodies of every tier's size through it, disposes it, and returns a weak reference to its pool.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static async Task<WeakReference> ServeAndDisposeOneHost(CancellationToken token)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, 0));
        builder.Services.AddTieredMemoryPool(options => options.IdleReleaseDelay = s_delay);
        WebApplication app = builder.Build();
        app.MapPost("/echo", static async (HttpContext context) => await context.Request.Body.CopyToAsync(context.Response.Body, context.RequestAborted));
        await app.StartAsync(token);
        var pool = new WeakReference(app.Services.GetRequiredService<TieredMemoryPool>());
        using (var client = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) })
        {
            foreach (int size in (int[])[100, 5_000, 200_000, 3 * 1024 * 1024])
            {
                using HttpResponseMessage response = await client.PostAsync("/echo", new ByteArrayContent(new byte[size]), token);
                Assert.Equal(size, (await response.Content.ReadAsByteArrayAsync(token)).Length);
            }
        }

        await app.StopAsync(token);
        await app.DisposeAsync();
        return pool;
    }

    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    private static int MapLines() => File.ReadLines("/proc/self/maps").Count();

    private static int ThreadCount() => (int)(ProcessMemory.Status("Threads") ?? 0);
}
