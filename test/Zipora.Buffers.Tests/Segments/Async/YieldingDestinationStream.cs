using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A destination whose every asynchronous write yields before taking the bytes, so a copy into it is pending across
/// each segment (and resumes on the thread pool), as a copy to a socket is; it counts the bytes it took that are not
/// one of the two values the test allows.
/// </summary>
internal sealed class YieldingDestinationStream(byte allowed) : Stream
{
    private long _foreign;
    private long _received;

    public long Foreign => Interlocked.Read(ref _foreign);

    public long Received => Interlocked.Read(ref _received);

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await Task.Yield();
        Write(buffer.Span);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        // Zeros are a gap a write past the end or a SetLength filled; anything else came from another buffer.
        Interlocked.Add(ref _foreign, buffer.Length - buffer.Count(allowed) - buffer.Count((byte)0));
        Interlocked.Add(ref _received, buffer.Length);
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
