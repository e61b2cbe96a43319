using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.EchoServer;

/// <summary>
/// Accepts TCP connections and echoes every byte back. Per connection, a receive loop writes the socket's bytes into
/// one <see cref="Pipe"/> and a send loop reads them out to the socket; the pipe rents its segments from the pool
/// given (<c>PipeOptions(pool: ...)</c>), so socket I/O pins native memory at no cost.
/// </summary>
public sealed class EchoServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly MemoryPool<byte> _pool;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, bool> _connections = new();
    private readonly Task _acceptLoop;

    private EchoServer(Socket listener, MemoryPool<byte> pool)
    {
        _listener = listener;
        _pool = pool;
        _acceptLoop = AcceptAsync();
    }

    /// <summary>Where the server listens (port 0 in the request picks a free port).</summary>
    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    public static EchoServer Start(IPEndPoint endPoint, MemoryPool<byte> pool)
    {
        var listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(endPoint);
        listener.Listen(128);
        return new EchoServer(listener, pool);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Dispose();
        await _acceptLoop;
        await Task.WhenAll(_connections.Keys);
        _stopping.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException) when (_stopping.IsCancellationRequested)
            {
                // Stopping: the listener's dispose can abort the pending accept before the token cancels it, which
                // surfaces as "operation canceled/aborted" from the socket instead of an OperationCanceledException.
                return;
            }

            Task serving = ServeAsync(connection);
            _connections[serving] = true;
            _ = serving.ContinueWith(done => _connections.TryRemove(done, out _), TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using (socket)
        {
            var pipe = new Pipe(new PipeOptions(pool: _pool, minimumSegmentSize: 16 * 1024, useSynchronizationContext: false));
            await Task.WhenAll(ReceiveAsync(socket, pipe.Writer), SendAsync(socket, pipe.Reader));
        }
    }

    private async Task ReceiveAsync(Socket socket, PipeWriter writer)
    {
        try
        {
            while (true)
            {
                Memory<byte> memory = writer.GetMemory(16 * 1024);
                int received = await socket.ReceiveAsync(memory, SocketFlags.None, _stopping.Token);
                if (received == 0)
                {
                    break;
                }

                writer.Advance(received);
                FlushResult flushed = await writer.FlushAsync(_stopping.Token);
                if (flushed.IsCompleted)
                {
                    break;
                }
            }

            await writer.CompleteAsync();
        }
        catch (Exception error) when (error is SocketException or OperationCanceledException)
        {
            // The peer went away or the server is stopping: end the pipe with the reason.
            await writer.CompleteAsync(error);
        }
    }

    private async Task SendAsync(Socket socket, PipeReader reader)
    {
        try
        {
            while (true)
            {
                ReadResult result = await reader.ReadAsync(_stopping.Token);
                foreach (ReadOnlyMemory<byte> segment in result.Buffer)
                {
                    await socket.SendAsync(segment, SocketFlags.None, _stopping.Token);
                }

                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            socket.Shutdown(SocketShutdown.Send);
            await reader.CompleteAsync();
        }
        catch (Exception error) when (error is SocketException or OperationCanceledException)
        {
            await reader.CompleteAsync(error);
        }
    }
}
