using System;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

public sealed class EchoServerTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(100_000)]
    [InlineData(8 * 1024 * 1024)]
    public async Task TheEchoSampleSendsEveryByteBackThroughPipesOnThePool(int size)
    {
        using var pool = new TieredMemoryPool();
        await using (var server = EchoServer.EchoServer.Start(new IPEndPoint(IPAddress.Loopback, 0), pool))
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(server.EndPoint, TestContext.Current.CancellationToken);
            byte[] sent = RandomNumberGenerator.GetBytes(size);
            byte[] received = new byte[size];

            Task sending = Task.Run(async () =>
            {
                await client.SendAsync(sent, SocketFlags.None);
                client.Shutdown(SocketShutdown.Send);
            });
            int total = 0;
            while (total < size)
            {
                int read = await client.ReceiveAsync(received.AsMemory(total), SocketFlags.None, TestContext.Current.CancellationToken);
                Assert.NotEqual(0, read);
                total += read;
            }

            await sending;
            Assert.Equal(0, await client.ReceiveAsync(new byte[1], SocketFlags.None, TestContext.Current.CancellationToken));
            Assert.True(sent.AsSpan().SequenceEqual(received));
        }

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.True(statistics.Medium.Rents > 0);
        Assert.Equal(0, statistics.BytesInUse);
    }
}
