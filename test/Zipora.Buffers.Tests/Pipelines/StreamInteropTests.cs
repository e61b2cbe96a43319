using System;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

public sealed class StreamInteropTests
{
    [Fact]
    public async Task StreamPipeReaderAndWriterOverALoopbackNetworkStreamUseThePool()
    {
        using var pool = new TieredMemoryPool();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        byte[] payload = RandomNumberGenerator.GetBytes(32 * 1024 * 1024);

        Task serving = Task.Run(async () =>
        {
            using TcpClient accepted = await listener.AcceptTcpClientAsync();
            await using NetworkStream stream = accepted.GetStream();
            PipeWriter writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(pool: pool, minimumBufferSize: 16 * 1024));
            for (int offset = 0; offset < payload.Length;)
            {
                int chunk = Math.Min(50_000, payload.Length - offset);
                Memory<byte> memory = writer.GetMemory(chunk);
                payload.AsMemory(offset, chunk).CopyTo(memory);
                writer.Advance(chunk);
                await writer.FlushAsync();
                offset += chunk;
            }

            await writer.CompleteAsync();
        });

        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port, TestContext.Current.CancellationToken);
        await using NetworkStream clientStream = client.GetStream();
        PipeReader reader = PipeReader.Create(clientStream, new StreamPipeReaderOptions(pool: pool, bufferSize: 64 * 1024));
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long received = 0;
        while (true)
        {
            ReadResult result = await reader.ReadAsync(TestContext.Current.CancellationToken);
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                hash.AppendData(segment.Span);
                received += segment.Length;
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await reader.CompleteAsync();
        await serving;
        Assert.Equal(payload.Length, received);
        Assert.Equal(SHA256.HashData(payload), hash.GetHashAndReset());

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Medium.Rents > 0, "the stream writer did not rent from the pool");
        Assert.True(statistics.Large.Rents > 0, "the stream reader did not rent from the pool");
        Assert.Equal(0, statistics.BytesInUse);
    }
}
