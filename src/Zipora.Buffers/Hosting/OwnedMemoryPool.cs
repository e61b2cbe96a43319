using System;
using System.Buffers;

namespace Zipora.Buffers;

/// <summary>
/// What <see cref="TieredMemoryPoolFactory"/> hands out: a view of the shared <see cref="TieredMemoryPool"/> that
/// counts rents for its owner. Disposing it (Kestrel does when a listener stops) stops the view renting, as
/// <see cref="MemoryPool{T}"/>'s contract asks, but does not touch the shared pool: buffers rented through it may
/// still be returned afterwards.
/// </summary>
internal sealed class OwnedMemoryPool : MemoryPool<byte>
{
    private readonly TieredMemoryPool _pool;
    private readonly OwnerCounter _counter;
    private readonly string _owner;
    private volatile bool _disposed;

    public OwnedMemoryPool(TieredMemoryPool pool, OwnerCounter counter, string owner)
    {
        _pool = pool;
        _counter = counter;
        _owner = owner;
    }

    /// <summary>The shared pool's <see cref="TieredMemoryPool.MaxBufferSize"/>.</summary>
    public override int MaxBufferSize => _pool.MaxBufferSize;

    /// <summary>
    /// Rents from the shared pool, counted under this view's owner, always with an owner per rent (even with
    /// <see cref="TieredMemoryPoolOptions.ReuseOwners"/>): a second dispose of it is ignored, whenever it comes.
    /// </summary>
    /// <inheritdoc cref="TieredMemoryPool.Rent" />
    /// <exception cref="ObjectDisposedException">This view, or the shared pool, was disposed.</exception>
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        if (_disposed)
        {
            ThrowHelper.ThrowViewDisposed(_owner);
        }

        IMemoryOwner<byte> owner = _pool.RentWithAnOwnerOfItsOwn(minBufferSize);
        _counter.CountRent();
        return owner;
    }

    protected override void Dispose(bool disposing) => _disposed = true;
}
