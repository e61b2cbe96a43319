using System.Buffers;

namespace Zipora.Buffers;

/// <summary>
/// What <see cref="TieredMemoryPoolFactory"/> hands out: a view of the shared <see cref="TieredMemoryPool"/> that
/// counts rents for its owner. Disposing it (Kestrel does when a listener stops) does not touch the shared pool, so
/// buffers rented through it may still be returned afterwards.
/// </summary>
internal sealed class OwnedMemoryPool : MemoryPool<byte>
{
    private readonly TieredMemoryPool _pool;
    private readonly OwnerCounter _counter;

    public OwnedMemoryPool(TieredMemoryPool pool, OwnerCounter counter)
    {
        _pool = pool;
        _counter = counter;
    }

    public override int MaxBufferSize => _pool.MaxBufferSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        IMemoryOwner<byte> owner = _pool.Rent(minBufferSize);
        _counter.CountRent();
        return owner;
    }

    protected override void Dispose(bool disposing)
    {
    }
}
