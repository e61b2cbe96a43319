using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Grpc.Core;
using Grpc.Net.Client;

namespace Zipora.Buffers.Tests;

/// <summary>
/// gRPC over Kestrel (HTTP/2, no TLS) on the tiered pool, as a demanding user runs it: unary and bidirectional calls of
/// 0 bytes to 4 MB, many at once, cancelled, timed out, failed by the server and cut by its stop, and traffic over
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>. Every message is checked byte for byte at both ends, and the
/// server's pool must be quiet and balanced once the host stops.
/// </summary>
public sealed class GrpcEndToEndTests
{
    // Of the 24 calls over the cap: at most this many may hang in Kestrel's handling of a refused rent (see the test).
    private const int MaxCallsLostToKestrelsShortFrames = 3;
    private static readonly int[] s_sizes = [0, 4, 5, 100, 4095, 4096, 16_384, 16_389, 65_536, 300_001, 1024 * 1024, 4 * 1024 * 1024];
    private static readonly TimeSpan s_callTimeout = TimeSpan.FromSeconds(30);

    // HTTP/2's CANCEL error code (RFC 9113, section 7), the code of a stream the server reset at its deadline.
    private const long HttpCancelCode = 0x8;

    [Theory]
    [InlineData(false, DiagnosticLevel.Off)]
    [InlineData(true, DiagnosticLevel.Off)]
    [InlineData(false, DiagnosticLevel.Sampled)]
    [InlineData(true, DiagnosticLevel.All)]
    public async Task UnaryAndDuplexCallsOfZeroToFourMegabytesComeBackByteForByteAndLeaveThePoolBalanced(bool reuseOwners, DiagnosticLevel diagnostics)
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        await using GrpcTestHost host = await GrpcTestHost.StartAsync(options =>
        {
            options.ReuseOwners = reuseOwners;
            options.Diagnostics = diagnostics;
            options.DiagnosticSampleRate = 4;
        }, token);

        // 48 unary calls and 8 streams of every size, all at once.
        Task unary = Parallel.ForAsync(0, 48, new ParallelOptions { MaxDegreeOfParallelism = 48, CancellationToken = token }, async (i, t) =>
        {
            GrpcPayload request = GrpcPayload.OfWireLength(i, s_sizes[i % s_sizes.Length]);
            GrpcPayload answer = await host.Invoker.AsyncUnaryCall(host.Methods.Echo, null, new CallOptions(cancellationToken: t), request).ResponseAsync.WaitAsync(s_callTimeout, t);
            Assert.Equal(request.Answer(), answer);
        });
        Task streams = Parallel.ForAsync(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = token }, async (s, t) =>
        {
            using AsyncDuplexStreamingCall<GrpcPayload, GrpcPayload> call = host.Invoker.AsyncDuplexStreamingCall(host.Methods.Chat, null, new CallOptions(cancellationToken: t));
            for (int i = 0; i < s_sizes.Length; i++)
            {
                GrpcPayload request = GrpcPayload.OfWireLength((s * 1000) + i, s_sizes[(i + s) % s_sizes.Length]);
                await call.RequestStream.WriteAsync(request, t).WaitAsync(s_callTimeout, t);
                Assert.True(await call.ResponseStream.MoveNext(t).WaitAsync(s_callTimeout, t), $"stream {s} ended before answer {i}");
                Assert.Equal(request.Answer(), call.ResponseStream.Current);
            }

            await call.RequestStream.CompleteAsync().WaitAsync(s_callTimeout, t);
            Assert.False(await call.ResponseStream.MoveNext(t).WaitAsync(s_callTimeout, t));
            Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        });
        await Task.WhenAll(unary, streams);

        TieredMemoryPoolStatistics after = await host.StopAsync(TimeSpan.FromSeconds(5), token);
        AssertQuietAndBalanced(host, after);
        Assert.True(host.Methods.Marshaller.BytesChecked > 2 * 24 * 1024 * 1024, $"only {host.Methods.Marshaller.BytesChecked} bytes were checked");
    }

    [Fact]
    public async Task CancellationsDeadlinesAndServerFaultsMidStreamEndInRpcExceptionsAndLeaveThePoolBalanced()
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        await using GrpcTestHost host = await GrpcTestHost.StartAsync(static _ => { }, token);
        await Parallel.ForAsync(0, 36, new ParallelOptions { MaxDegreeOfParallelism = 36, CancellationToken = token }, async (s, t) =>
        {
            int kind = s % 3;
            using var cancel = new CancellationTokenSource();
            var metadata = new Metadata();
            if (kind == 2)
            {
                metadata.Add(GrpcEchoMethods.FailAtHeader, "3");
            }

            CallOptions options = kind switch
            {
                0 => new CallOptions(metadata, cancellationToken: cancel.Token),
                1 => new CallOptions(metadata, deadline: DateTime.UtcNow.AddMilliseconds(300 + (s * 10))),
                _ => new CallOptions(metadata),
            };
            using AsyncDuplexStreamingCall<GrpcPayload, GrpcPayload> call = host.Invoker.AsyncDuplexStreamingCall(host.Methods.Chat, null, options);
            Exception thrown = await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                for (int i = 0; ; i++)
                {
                    GrpcPayload request = GrpcPayload.OfWireLength((s * 1000) + i, s_sizes[(i + s) % s_sizes.Length]);
                    if (kind == 0 && i == 2 + (s % 4))
                    {
                        // Cancelled with a big message half sent.
                        Task write = call.RequestStream.WriteAsync(GrpcPayload.OfWireLength(s, 4 * 1024 * 1024), t);
                        await cancel.CancelAsync();
                        await write.WaitAsync(s_callTimeout, t);
                    }

                    if (kind == 1 && i == 3)
                    {
                        // The server waits mid-stream for a message that never comes: the deadline ends the wait.
                        await call.ResponseStream.MoveNext(t).WaitAsync(s_callTimeout, t);
                    }

                    // Each answer is read before the next message goes: a client that sends on while it does not read
                    // deadlocks on HTTP/2's flow control, whatever the pool.
                    await call.RequestStream.WriteAsync(request, t).WaitAsync(s_callTimeout, t);
                    Assert.True(await call.ResponseStream.MoveNext(t).WaitAsync(s_callTimeout, t), $"stream {s} ended before answer {i}");
                    Assert.Equal(request.Answer(), call.ResponseStream.Current);
                }
            });
            // A write racing the server's reset of a stream it ended (at the deadline, or at its fault) surfaces the HTTP/2
            // reset itself: Grpc.Net.Client wraps it in an RpcException on reads, not on that write (seen in a full run).
            if (kind != 0 && thrown is System.Net.Http.HttpProtocolException { ErrorCode: HttpCancelCode })
            {
                return;
            }

            RpcException failure = Assert.IsType<RpcException>(thrown);

            // The server enforces the deadline too: when its reset of the stream arrives before the client's own timer
            // fires, the client reads an aborted stream (Unavailable) or, when the reset's CANCEL code reaches the client's
            // read first, a stream the server cancelled (seen in a CI run); the client never cancels these calls itself.
            bool expected = kind switch
            {
                0 => failure.StatusCode == StatusCode.Cancelled,
                1 => failure.StatusCode is StatusCode.DeadlineExceeded or StatusCode.Unavailable || ResetByTheServer(failure),
                _ => failure.StatusCode == StatusCode.Unknown,
            };
            Assert.True(expected, $"stream {s}: {failure}");
        });

        // The server still serves.
        GrpcPayload last = GrpcPayload.OfWireLength(7, 1024 * 1024);
        Assert.Equal(last.Answer(), await host.Invoker.AsyncUnaryCall(host.Methods.Echo, null, new CallOptions(cancellationToken: token), last).ResponseAsync.WaitAsync(s_callTimeout, token));
        TieredMemoryPoolStatistics after = await host.StopAsync(TimeSpan.FromSeconds(5), token);
        AssertQuietAndBalanced(host, after);
    }

    private static bool ResetByTheServer(RpcException failure) =>
        failure.StatusCode == StatusCode.Cancelled && failure.InnerException is System.Net.Http.HttpProtocolException { ErrorCode: HttpCancelCode };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task StoppingTheServerWhileCallsStreamEndsThemInRpcExceptionsAndLeavesThePoolBalanced(bool reuseOwners)
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        await using GrpcTestHost host = await GrpcTestHost.StartAsync(options => options.ReuseOwners = reuseOwners, token);
        var going = new List<Task>();
        var calls = new List<Task>();
        for (int s = 0; s < 16; s++)
        {
            int stream = s;
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            going.Add(started.Task);
            calls.Add(Task.Run(async () =>
            {
                using AsyncDuplexStreamingCall<GrpcPayload, GrpcPayload> call = host.Invoker.AsyncDuplexStreamingCall(host.Methods.Chat, null, new CallOptions(cancellationToken: token));
                for (int i = 0; ; i++)
                {
                    GrpcPayload request = GrpcPayload.OfWireLength((stream * 1000) + i, s_sizes[(i + stream) % s_sizes.Length]);
                    await call.RequestStream.WriteAsync(request, token).WaitAsync(s_callTimeout, token);
                    Assert.True(await call.ResponseStream.MoveNext(token).WaitAsync(s_callTimeout, token), $"stream {stream} ended before answer {i}");
                    Assert.Equal(request.Answer(), call.ResponseStream.Current);

                    if (i == 2)
                    {
                        started.SetResult();
                    }
                }
            }, token));
        }

        Task allGoing = Task.WhenAll(going);
        Task first = await Task.WhenAny(allGoing, Task.WhenAny(calls)).WaitAsync(s_callTimeout, token);
        Assert.True(first == allGoing, $"a stream ended before the stop: {calls.FirstOrDefault(c => c.IsCompleted)?.Exception}");
        Assert.True(host.Pool.GetStatistics().BytesInUse > 0, "nothing of the pool was in flight at the stop");
        TieredMemoryPoolStatistics after = await host.StopAsync(TimeSpan.FromMilliseconds(300), token);
        foreach (Task call in calls)
        {
            // The client's write to a connection the server cut throws IOException (Grpc.Net.Client's own behaviour, with
            // Kestrel's own pool too); its reads throw RpcException. A write racing the client's own clean-up of the call the
            // cut ended finds that call disposed (ObjectDisposedException naming Grpc.Net.Client's GrpcCall, seen once in a CI run);
            // the pool is no party to it, the client never hands it memory.
            Exception failure = await Assert.ThrowsAnyAsync<Exception>(() => call.WaitAsync(s_callTimeout, token));
            Assert.True(
                failure is IOException
                    or RpcException { StatusCode: StatusCode.Unavailable or StatusCode.Cancelled or StatusCode.Internal or StatusCode.Aborted }
                || (failure is ObjectDisposedException disposed && disposed.ObjectName.StartsWith("Grpc.Net.Client.Internal.GrpcCall", StringComparison.Ordinal)),
                failure.ToString());
        }

        AssertQuietAndBalanced(host, after);
    }

    [Theory]
    [InlineData(false, DiagnosticLevel.Off)]
    [InlineData(true, DiagnosticLevel.Sampled)]
    [InlineData(false, DiagnosticLevel.All)]
    public async Task TrafficOverMaxBytesInUseIsRefusedAsRpcExceptionsAndTheServerServesAgainAfterIt(bool reuseOwners, DiagnosticLevel diagnostics)
    {
        const long Cap = 12 * 1024 * 1024;
        CancellationToken token = TestContext.Current.CancellationToken;
        await using GrpcTestHost host = await GrpcTestHost.StartAsync(options =>
        {
            options.ReuseOwners = reuseOwners;
            options.Diagnostics = diagnostics;
            options.DiagnosticSampleRate = 4;
            options.MaxBytesInUse = Cap;
            options.IdleReleaseDelay = TimeSpan.FromMilliseconds(200);
        }, token);
        int refused = 0;
        int served = 0;
        var timedOut = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await Parallel.ForAsync(0, 24, new ParallelOptions { MaxDegreeOfParallelism = 24, CancellationToken = token }, async (i, t) =>
        {
            GrpcPayload request = GrpcPayload.OfWireLength(i, s_sizes[i % s_sizes.Length] + (2 * 1024 * 1024));
            try
            {
                // A connection per call: a refused rent ends the connection it was for, so calls on others go on.
                using GrpcChannel channel = host.CreateChannel();
                GrpcPayload answer = await channel.CreateCallInvoker().AsyncUnaryCall(host.Methods.Echo, null, new CallOptions(cancellationToken: t), request).ResponseAsync.WaitAsync(s_callTimeout, t);
                Assert.Equal(request.Answer(), answer);
                Interlocked.Increment(ref served);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unknown or StatusCode.Unavailable or StatusCode.Internal or StatusCode.ResourceExhausted or StatusCode.Cancelled)
            {
                Interlocked.Increment(ref refused);
            }
            catch (TimeoutException)
            {
                timedOut.Enqueue($"call {i} ({s_sizes[i % s_sizes.Length]} B and 2 MB) unanswered after {s_callTimeout.TotalSeconds} s; the pool then: {host.Pool.GetStatistics()}");
            }
        });
        TestContext.Current.SendDiagnosticMessage($"served {served}, refused {refused}, unanswered {timedOut.Count}\n{string.Join("\n", timedOut)}");

        // A call may hang on Kestrel's side of a refusal, not the pool's (whose rents never wait: they are served or
        // refused at once): refused partway through a DATA frame's payload, Kestrel leaves the frame short and the
        // frames after it are read as its payload (KestrelAtTheCapTests), so the client may wait for bytes that never
        // come. Seen in a CI run (section 42 of perf/RESULTS.md) and in 1 of about 11 runs on a loaded host, with the
        // pool under its cap (5.9 of 12 MB in use). The pool's promises are checked below either way: the server serves
        // again, and once the connections are gone the pool is balanced.
        Assert.True(timedOut.Count <= MaxCallsLostToKestrelsShortFrames, string.Join("\n", timedOut));
        Assert.True(refused > 0, $"the cap refused nothing ({served} served): {host.Pool.GetStatistics()}");

        // Once the refused traffic is gone, the pool is under its cap again and the server serves as before.
        await Task.Delay(500, token);
        GrpcPayload again = GrpcPayload.OfWireLength(99, 1024 * 1024);
        Assert.Equal(again.Answer(), await host.Invoker.AsyncUnaryCall(host.Methods.Echo, null, new CallOptions(cancellationToken: token), again).ResponseAsync.WaitAsync(s_callTimeout, token));
        TieredMemoryPoolStatistics after = await host.StopAsync(TimeSpan.FromSeconds(5), token, collectDroppedBuffers: true);
        AssertQuietAndBalanced(host, after, refusalsExpected: true);
    }

    private static void AssertQuietAndBalanced(GrpcTestHost host, TieredMemoryPoolStatistics after, bool refusalsExpected = false)
    {
        Assert.Equal(0, host.Methods.Marshaller.Corruptions);
        Assert.True(after.RentsByOwner.GetValueOrDefault("kestrel") > 0, "Kestrel did not rent from the pool");
        Assert.True(after.BytesInUse == 0, after.ToString());
        foreach (TierStatistics tier in new[] { after.Small, after.Medium, after.Large, after.Huge })
        {
            Assert.True(tier.Rents == tier.Returns, after.ToString());
        }

        Assert.Equal(0, after.DoubleDisposes);
        if (!refusalsExpected)
        {
            // A refusal faults its connection, whose dropped blocks diagnostic mode rightly reports as leaked (see
            // GrpcTestHost.StopAsync); anywhere else a leak would be one.
            Assert.Equal(0, after.LeaksDetected);
        }
        string poolErrors = host.PoolErrors(refusalsExpected);
        Assert.True(poolErrors.Length == 0, poolErrors);
    }
}
