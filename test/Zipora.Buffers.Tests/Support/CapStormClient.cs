using System;
using System.Collections.Concurrent;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The hostile clients of <see cref="CapStormServer"/>: HTTP/1.1 and HTTP/2 uploads and downloads (HttpClient with
/// <see cref="HttpVersionPolicy.RequestVersionExact"/>), HTTP/2 downloads cancelled mid-body, raw HTTP/1.1 uploads
/// reset mid-body, slow readers that stop reading a big download and then reset, and WebSocket echoes. Every operation
/// must end within <see cref="Deadline"/>, served with every byte right or refused (a 5xx, a reset, an aborted stream).
/// </summary>
internal sealed class CapStormClient : IDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    private const int Megabyte = 1024 * 1024;
    private readonly CapStormServer _server;
    private readonly HttpClient _http1;
    private readonly HttpClient _http2;
    private long _served;
    private long _refused;

    public CapStormClient(CapStormServer server)
    {
        _server = server;
        _http1 = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256, PooledConnectionLifetime = TimeSpan.FromSeconds(5) })
        {
            BaseAddress = server.Http1,
            DefaultRequestVersion = HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http2 = new HttpClient(new SocketsHttpHandler { EnableMultipleHttp2Connections = true })
        {
            BaseAddress = server.Http2,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>Broken promises: an operation that outlived the deadline, bytes that came back wrong.</summary>
    public ConcurrentQueue<string> Failures { get; } = new();

    /// <summary>The kinds of refusals the clients saw, for the report.</summary>
    public ConcurrentDictionary<string, int> RefusalKinds { get; } = new();

    public long Served => Interlocked.Read(ref _served);

    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Runs <paramref name="operations"/> operations of every kind in turn, <paramref name="parallel"/> at once.</summary>
    public Task StormAsync(int operations, int parallel, CancellationToken token) =>
        Parallel.ForAsync(0, operations, new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = token }, async (i, t) =>
        {
            string name = $"operation {i} (kind {i % 7})";
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(t);
            deadline.CancelAfter(Deadline);
            Task operation = RunAsync(i, deadline.Token);
            try
            {
                await operation.WaitAsync(Deadline + TimeSpan.FromSeconds(5), t);
                Interlocked.Increment(ref _served);
            }
            catch (TimeoutException)
            {
                Failures.Enqueue($"{name} hung past {Deadline}; the pool then: {_server.Pool.GetStatistics()}");
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !t.IsCancellationRequested)
            {
                Failures.Enqueue($"{name} did not end within {Deadline}; the pool then: {_server.Pool.GetStatistics()}");
            }
            catch (Exception e) when (IsRefusal(e))
            {
                Interlocked.Increment(ref _refused);
                RefusalKinds.AddOrUpdate(Describe(e), 1, static (_, n) => n + 1);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Failures.Enqueue($"{name}: {e}");
            }
        });

    /// <summary>One upload and one download on each protocol, all of whose bytes must come back right.</summary>
    public async Task ServeNormallyAsync(CancellationToken token)
    {
        foreach (HttpClient client in new[] { _http1, _http2 })
        {
            await UploadAsync(client, "check", 77, Megabyte, token);
            await DownloadAsync(client, 78, 2 * Megabyte, cancelAfter: -1, token);
        }
    }

    private Task RunAsync(int i, CancellationToken token) => (i % 7) switch
    {
        0 => UploadAsync(_http1, "check", i, Size(i, 1, 3), token),
        1 => UploadAsync(_http2, "hold", i, Size(i, 1, 3), token),
        2 => DownloadAsync(_http1, i, Size(i, 2, 6), cancelAfter: -1, token),
        3 => DownloadAsync(_http2, i, Size(i, 2, 6), cancelAfter: i % 2 == 0 ? Megabyte / 2 : -1, token),
        4 => ResetMidUploadAsync(i, token),
        5 => SlowReaderAsync(i, token),
        _ => WebSocketEchoAsync(i, token),
    };

    private static int Size(int i, int fromMegabytes, int toMegabytes) =>
        new Random(i).Next(fromMegabytes * Megabyte, toMegabytes * Megabyte);

    private async Task UploadAsync(HttpClient client, string endpoint, int seed, int size, CancellationToken token)
    {
        byte[] body = new byte[size];
        SeededPattern.Fill(body, seed, 0);
        using HttpResponseMessage response = await client.PostAsync($"/{endpoint}/{seed}", new ByteArrayContent(body), token);
        string answer = await response.Content.ReadAsStringAsync(token);
        if ((int)response.StatusCode >= 500)
        {
            throw new HttpRequestException($"status {(int)response.StatusCode}", null, response.StatusCode);
        }

        if (answer != $"ok {size}")
        {
            Failures.Enqueue($"upload {seed} on HTTP/{response.Version}: {(int)response.StatusCode} {answer}");
        }
    }

    private async Task DownloadAsync(HttpClient client, int seed, int size, int cancelAfter, CancellationToken token)
    {
        using HttpResponseMessage response = await client.GetAsync($"/bytes/{seed}/{size}", HttpCompletionOption.ResponseHeadersRead, token);
        if ((int)response.StatusCode >= 500)
        {
            throw new HttpRequestException($"status {(int)response.StatusCode}", null, response.StatusCode);
        }

        await using Stream body = await response.Content.ReadAsStreamAsync(token);
        byte[] buffer = new byte[64 * 1024];
        long position = 0;
        while (true)
        {
            if (cancelAfter >= 0 && position >= cancelAfter)
            {
                return;
            }

            int read = await body.ReadAsync(buffer, token);
            if (read == 0)
            {
                break;
            }

            if (!SeededPattern.Matches(buffer.AsSpan(0, read), seed, position))
            {
                Failures.Enqueue($"download {seed} on HTTP/{response.Version}: wrong bytes in the read at {position} ({read} bytes): {WrongBytes(buffer.AsSpan(0, read), seed, position)}");
                return;
            }

            position += read;
        }

        if (position != size)
        {
            throw new IOException($"download {seed} ended at {position} of {size}");
        }
    }

    private async Task ResetMidUploadAsync(int seed, CancellationToken token)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, _server.Http1.Port, token);
        int size = 4 * Megabyte;
        await socket.SendAsync(Encoding.ASCII.GetBytes($"POST /hold/{seed} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"), SocketFlags.None, token);
        byte[] part = new byte[Size(seed, 1, 3)];
        SeededPattern.Fill(part, seed, 0);
        await socket.SendAsync(part, SocketFlags.None, token);
        socket.LingerState = new LingerOption(true, 0);
    }

    private async Task SlowReaderAsync(int seed, CancellationToken token)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 16 * 1024 };
        await socket.ConnectAsync(IPAddress.Loopback, _server.Http1.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET /bytes/{seed}/{8 * Megabyte} HTTP/1.1\r\nHost: x\r\n\r\n"), SocketFlags.None, token);
        byte[] some = new byte[16 * 1024];
        await socket.ReceiveAsync(some, SocketFlags.None, token);

        // Stops reading while the server writes on into its unlimited response pipe, then resets.
        await Task.Delay(1000 + (seed % 5 * 100), token);
        socket.LingerState = new LingerOption(true, 0);
    }

    private async Task WebSocketEchoAsync(int seed, CancellationToken token)
    {
        using var socket = new ClientWebSocket();
        socket.Options.HttpVersion = HttpVersion.Version11;
        socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{_server.Http1.Port}/ws"), token);
        byte[] back = new byte[Megabyte + 4];
        for (int m = 0; m < 4; m++)
        {
            int length = 4 + new Random(seed + m).Next(1, Megabyte);
            byte[] message = new byte[length];
            BitConverter.TryWriteBytes(message, seed + m);
            SeededPattern.Fill(message.AsSpan(4), seed + m, 0);
            await socket.SendAsync(message, WebSocketMessageType.Binary, endOfMessage: true, token);
            int received = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                result = await socket.ReceiveAsync(back.AsMemory(received), token);
                received += result.Count;
            }
            while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new WebSocketException($"closed by the server: {socket.CloseStatus} {socket.CloseStatusDescription}");
            }

            if (received != length || !back.AsSpan(0, length).SequenceEqual(message))
            {
                Failures.Enqueue($"websocket {seed} message {m}: {received} of {length} bytes, or wrong bytes");
                return;
            }
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, token);
    }

    // Where the read went wrong, and whose stream the wrong bytes are (a seed and position), for the failure's message.
    private static string WrongBytes(ReadOnlySpan<byte> read, int seed, long position)
    {
        int first = 0;
        while (first < read.Length && SeededPattern.Matches(read.Slice(first, 1), seed, position + first))
        {
            first++;
        }

        int last = read.Length - 1;
        while (last > first && SeededPattern.Matches(read.Slice(last, 1), seed, position + last))
        {
            last--;
        }

        ReadOnlySpan<byte> wrong = read.Slice(first, Math.Min(32, last - first + 1));
        string owner = "no stream's";
        for (int other = 0; other < 200 && owner == "no stream's"; other++)
        {
            for (long p = 0; p < 8 * Megabyte; p++)
            {
                if (SeededPattern.Matches(wrong, other, p))
                {
                    owner = $"stream {other}'s at {p}";
                    break;
                }
            }
        }

        return $"first wrong at {position + first}, last at {position + last}, {Convert.ToHexString(wrong)}: {owner}";
    }

    private static bool IsRefusal(Exception e) => e is HttpRequestException or IOException or WebSocketException or SocketException;

    private static string Describe(Exception e)
    {
        string text = e.GetType().Name + ": " + e.Message;
        for (Exception? inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            text += " <- " + inner.GetType().Name + ": " + inner.Message;
        }

        return text.Length > 200 ? text[..200] : text;
    }

    public void Dispose()
    {
        _http1.Dispose();
        _http2.Dispose();
    }
}
