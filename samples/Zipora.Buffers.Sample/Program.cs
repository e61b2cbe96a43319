using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Threading.Tasks;
using Zipora.Buffers;
using Zipora.Buffers.Native;

// Rents one buffer from each tier, streams 64 MB through a Pipe backed by the pool, and prints what the pool did.
TieredMemoryPool pool = TieredMemoryPool.Shared;
Console.WriteLine($"Zipora.Buffers sample: MaxBufferSize {pool.MaxBufferSize:N0} bytes; hugepages: {HugePageInfo.Read()}");
Console.WriteLine();

foreach (int size in new[] { 100, 4096, 200_000, 8 * 1024 * 1024 })
{
    using IMemoryOwner<byte> owner = pool.Rent(size);
    owner.Memory.Span.Fill(0x5A);
    Console.WriteLine($"rented {size,10:N0} bytes -> got {owner.Memory.Length,10:N0} bytes");
}

const long bytesToMove = 64L * 1024 * 1024;
var pipe = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: 16 * 1024));
byte[] writtenHash = [];
Task writer = Task.Run(async () =>
{
    using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    var random = new Random(42);
    for (long written = 0; written < bytesToMove;)
    {
        int chunk = (int)Math.Min(random.Next(1, 64 * 1024), bytesToMove - written);
        Memory<byte> memory = pipe.Writer.GetMemory(chunk);
        random.NextBytes(memory.Span[..chunk]);
        hash.AppendData(memory.Span[..chunk]);
        pipe.Writer.Advance(chunk);
        written += chunk;
        await pipe.Writer.FlushAsync();
    }

    writtenHash = hash.GetHashAndReset();
    await pipe.Writer.CompleteAsync();
});

using var readHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
long read = 0;
while (true)
{
    ReadResult result = await pipe.Reader.ReadAsync();
    foreach (ReadOnlyMemory<byte> segment in result.Buffer)
    {
        readHash.AppendData(segment.Span);
        read += segment.Length;
    }

    pipe.Reader.AdvanceTo(result.Buffer.End);
    if (result.IsCompleted)
    {
        break;
    }
}

await writer;
await pipe.Reader.CompleteAsync();
bool intact = readHash.GetHashAndReset().AsSpan().SequenceEqual(writtenHash);
Console.WriteLine();
Console.WriteLine($"moved {read:N0} bytes through a Pipe on the pool; SHA-256 {(intact ? "matches" : "DIFFERS")}");
Console.WriteLine();
Console.WriteLine(pool.GetStatistics());
return intact ? 0 : 1;
