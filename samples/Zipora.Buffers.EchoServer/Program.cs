using System;
using System.Globalization;
using System.Net;
using System.Threading;
using Zipora.Buffers;
using Zipora.Buffers.EchoServer;

// A raw TCP echo server: each connection's bytes go through two Pipes whose segments come from the tiered pool.
int port = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 5090;
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

await using var server = EchoServer.Start(new IPEndPoint(IPAddress.Loopback, port), TieredMemoryPool.Shared);
Console.WriteLine($"echo server on {server.EndPoint}; try: nc 127.0.0.1 {server.EndPoint.Port}   (Ctrl+C stops it)");
try
{
    await System.Threading.Tasks.Task.Delay(Timeout.Infinite, cancel.Token);
}
catch (OperationCanceledException)
{
}

Console.WriteLine(TieredMemoryPool.Shared.GetStatistics());
