using System;
using System.Linq;
using System.Net.Http;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using static Zipora.Buffers.Tests.SegmentedBuffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// HttpClient sending a <see cref="SegmentedMemoryStream"/> as <see cref="StreamContent"/> to a real Kestrel on
/// 127.0.0.1 that stops reading after the first bytes: the content's copy is then pending on a full socket (the
/// stream's <c>CopyToAsync</c>, holding its segments), as an upload to a slow server is. The request (and with it the
/// content and the stream) is disposed from another thread meanwhile, while other threads rent the stream's pool.
/// Whether the send then completes or is cancelled, the server receives only the stream's bytes and every block goes
/// back once. And the other way: a handler copying a stream to a response whose client goes away midway, the stream
/// disposed by the abort's callback (on the thread that sees the abort) while the copy is pending.
/// </summary>
public sealed class SegmentedStreamOverKestrelSafetyTests
{
    // Well past what the loopback socket buffers take, so the copy waits on the server.
    private const int Size = 16 * 1024 * 1024;
    private const byte Mine = 0x5A;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnUploadDisposedWhileItsCopyWaitsOnTheSocketSendsOnlyTheStreamsBytesAndReturnsEachBlockOnce(bool cancel)
    {
        var firstBytes = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var received = new TaskCompletionSource<(long Bytes, long Foreign)>(TaskCreationOptions.RunContinuationsAsynchronously);
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        await using WebApplication app = builder.Build();
        app.MapPost("/hold", async (HttpContext context) =>
        {
            long bytes = 0;
            long foreign = 0;
            byte[] chunk = new byte[64 * 1024];
            try
            {
                while (true)
                {
                    int read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted);
                    if (read == 0)
                    {
                        break;
                    }

                    foreign += read - chunk.AsSpan(0, read).Count(Mine);
                    bytes += read;
                    if (firstBytes.TrySetResult())
                    {
                        await resume.Task;
                    }
                }
            }
            catch (Exception exception) when (exception is OperationCanceledException or Microsoft.AspNetCore.Connections.ConnectionResetException or System.IO.IOException)
            {
                // The client cancelled: what arrived until then is still checked.
            }

            received.TrySetResult((bytes, foreign));
        });
        await app.StartAsync(TestContext.Current.CancellationToken);
        var address = new Uri(app.Urls.Single());

        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, MaxLength = 2L * Size };
        var stream = new SegmentedMemoryStream(options);
        stream.Write(Filled(Size, Mine));
        stream.Position = 0;
        using var client = new HttpClient { BaseAddress = address };
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var request = new HttpRequestMessage(HttpMethod.Post, "/hold") { Content = new StreamContent(stream) };
        Task<HttpResponseMessage> send = client.SendAsync(request, cancellation.Token);

        using (var stampers = new PoolStampers(pool, options, 4096))
        {
            await firstBytes.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            await Task.Delay(50, TestContext.Current.CancellationToken);
            Assert.False(send.IsCompleted, "the upload did not wait on the server");

            // The request disposes its content, which disposes the stream, while the copy is pending.
            await Task.Run(request.Dispose, TestContext.Current.CancellationToken);
            Assert.False(stream.CanRead);
            if (cancel)
            {
                await cancellation.CancelAsync();
            }

            long rents = stampers.Rents;
            SpinWait.SpinUntil(() => stampers.Rents > rents + 200, TimeSpan.FromSeconds(5));
            resume.SetResult();
            Exception? error = await Record.ExceptionAsync(async () => (await send).Dispose());
            Assert.True(cancel ? error is OperationCanceledException : error is null, $"the send ended with {error}");
            Assert.Equal(0, stampers.Broken);
        }

        (long bytes, long foreign) = await received.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(0, foreign);
        Assert.True(cancel ? bytes <= Size : bytes == Size, $"the server received {bytes} of {Size} bytes");
        AssertBalanced(pool);
        await app.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task ADownloadAbortedByItsClientWhileTheHandlersCopyIsPendingSendsOnlyTheStreamsBytesAndReturnsEachBlockOnce()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, MaxLength = 2L * Size };
        var handlerDone = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        await using WebApplication app = builder.Build();
        app.MapGet("/download", async (HttpContext context) =>
        {
            var stream = new SegmentedMemoryStream(options);
            Exception? error = null;
            try
            {
                stream.Write(Filled(Size, Mine));
                stream.Position = 0;

                // A common pattern: the abort disposes what the request holds, from whichever thread sees it first.
                using CancellationTokenRegistration registration = context.RequestAborted.Register(stream.Dispose);
                await stream.CopyToAsync(context.Response.Body, context.RequestAborted);
            }
            catch (Exception exception)
            {
                error = exception;
            }
            finally
            {
                stream.Dispose();
                handlerDone.TrySetResult(error);
            }
        });
        await app.StartAsync(TestContext.Current.CancellationToken);
        using var client = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };

        using (var stampers = new PoolStampers(pool, options, 4096))
        {
            HttpResponseMessage response = await client.GetAsync("/download", HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken);
            System.IO.Stream body = await response.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken);
            byte[] chunk = new byte[256 * 1024];
            int got = await body.ReadAtLeastAsync(chunk, chunk.Length, throwOnEndOfStream: false, TestContext.Current.CancellationToken);
            Assert.Equal(chunk.Length, got);
            Assert.False(chunk.AsSpan().ContainsAnyExcept(Mine), "the client received bytes that are not the stream's");
            await Task.Delay(50, TestContext.Current.CancellationToken);
            Assert.False(handlerDone.Task.IsCompleted, "the download did not wait on the client");

            // The client goes away with most of the body unread: the server sees the abort.
            response.Dispose();
            Exception? error = await handlerDone.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            // Kestrel may also complete writes after an abort without an error (it drops them): the copy then ends as usual.
            Assert.True(error is null or OperationCanceledException or System.IO.IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException, $"the handler's copy ended with {error}");
            Assert.Equal(0, stampers.Broken);
        }

        AssertBalanced(pool);
        await app.StopAsync(TestContext.Current.CancellationToken);
    }
}
