using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A destination stream that, at its first asynchronous write, yields (the copy resumes on the thread pool), disposes
/// the source it is copied from, and keeps taking what it is given into <paramref name="received"/>.
/// </summary>
internal sealed class SourceDisposingStream(IDisposable source, MemoryStream received) : Stream
{
    private bool _disposedSource;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!_disposedSource)
        {
            _disposedSource = true;
            await Task.Yield();
            source.Dispose();
        }

        received.Write(buffer.Span);
    }

    public override void Write(byte[] buffer, int offset, int count) => received.Write(buffer, offset, count);

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
