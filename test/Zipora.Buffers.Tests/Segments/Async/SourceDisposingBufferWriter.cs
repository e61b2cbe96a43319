using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An <see cref="IBufferWriter{T}"/> destination that disposes the source it is copied from at its first advance, as a
/// consumer that owns the source and lets go of it as soon as it has started would, then keeps taking what it is given.
/// </summary>
internal sealed class SourceDisposingBufferWriter(IDisposable source) : IBufferWriter<byte>
{
    private readonly ArrayBufferWriter<byte> _written = new();
    private bool _disposedSource;

    public ReadOnlySpan<byte> WrittenSpan => _written.WrittenSpan;

    public void Advance(int count)
    {
        _written.Advance(count);
        if (!_disposedSource)
        {
            _disposedSource = true;
            source.Dispose();
        }
    }

    public Memory<byte> GetMemory(int sizeHint = 0) => _written.GetMemory(sizeHint);

    public Span<byte> GetSpan(int sizeHint = 0) => _written.GetSpan(sizeHint);
}
