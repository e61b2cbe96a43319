using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
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

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DisposedHostsPoolsAreCollectedAndLeaveNoTimerOrMeterEntryBehind(bool connectionsInFlightAtShutdown)
    {
        CancellationToken token = TestContext.Current.CancellationToken;

        // A first cycle warms Kestrel, the HTTP client and the JIT up, so the baseline counts what stays with them.
        _ = await ServeAndDisposeOneHost(connectionsInFlightAtShutdown, token);
        Settle();
        int trackedBefore = PoolMetrics.TrackedPools;
        int scheduledBefore = IdleTicker.For(TimeProvider.System).Scheduled;
        long writableBefore = ProcessMappings.WritableBytes();
        int mapLinesBefore = MapLines();
        int threadsBefore = ThreadCount();

        var pools = new List<WeakReference>();
        for (int cycle = 0; cycle < Cycles; cycle++)
        {
            pools.Add(await ServeAndDisposeOneHost(connectionsInFlightAtShutdown, token));
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
    /// <remarks>
    /// With connections in flight, two raw connections are open at shutdown: an upload stopped mid-body, and an echo whose
    /// response the client never reads; the host's shutdown timeout ends them, and their buffers come back after the pool
    /// was disposed.
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static async Task<WeakReference> ServeAndDisposeOneHost(bool connectionsInFlightAtShutdown, CancellationToken token)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, 0));
        builder.Services.AddTieredMemoryPool(options => options.IdleReleaseDelay = s_delay);
        builder.Services.Configure<HostOptions>(static options => options.ShutdownTimeout = TimeSpan.FromMilliseconds(300));
        WebApplication app = builder.Build();
        app.MapPost("/echo", static async (HttpContext context) => await context.Request.Body.CopyToAsync(context.Response.Body, context.RequestAborted));
        await app.StartAsync(token);
        TieredMemoryPool pool = app.Services.GetRequiredService<TieredMemoryPool>();
        using (var client = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) })
        {
            foreach (int size in (int[])[100, 5_000, 200_000, 3 * 1024 * 1024])
            {
                using HttpResponseMessage response = await client.PostAsync("/echo", new ByteArrayContent(new byte[size]), token);
                Assert.Equal(size, (await response.Content.ReadAsByteArrayAsync(token)).Length);
            }
        }

        var inFlight = new List<Socket>();
        if (connectionsInFlightAtShutdown)
        {
            var endPoint = new IPEndPoint(IPAddress.Loopback, new Uri(app.Urls.Single()).Port);
            inFlight.Add(await SendRequest(endPoint, 10_000_000, 300_000, token));
            inFlight.Add(await SendRequest(endPoint, 4 * 1024 * 1024, 4 * 1024 * 1024, token));
        }

        await app.StopAsync(token);
        await app.DisposeAsync();
        Assert.True(pool.IsDisposed, "the host did not dispose the pool it made");
        inFlight.ForEach(static socket => socket.Dispose());
        var clock = Stopwatch.StartNew();
        while (pool.GetStatistics().BytesInUse != 0 && clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            await Task.Delay(10, token);
        }

        Assert.Equal(0, pool.GetStatistics().BytesInUse);
        return new WeakReference(pool);
    }

    /// <summary>Opens a connection and sends an echo request announcing <paramref name="length"/> bytes, of which it sends <paramref name="sent"/>.</summary>
    private static async Task<Socket> SendRequest(IPEndPoint endPoint, int length, int sent, CancellationToken token)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint, token);
        _ = await socket.SendAsync(Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n"), token);

        // Sent on its own: an echo whose response is never read stops the server's writes, and so its reads, and the
        // client's sends would wait for ever.
        _ = Task.Run(async () => await socket.SendAsync(new byte[sent], CancellationToken.None), CancellationToken.None);
        await Task.Delay(50, token);
        return socket;
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
