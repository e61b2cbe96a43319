using System;
using System.Buffers;
using Microsoft.AspNetCore.Connections;

namespace Zipora.Buffers;

/// <summary>
/// The <see cref="IMemoryPoolFactory{T}"/> that <c>AddTieredMemoryPool()</c> registers: every pool it creates rents
/// from one shared <see cref="TieredMemoryPool"/> and counts its rents under the owner it was asked for.
/// </summary>
/// <remarks>
/// Kestrel calls <see cref="Create"/> once per transport I/O queue per listener and disposes those pools when the
/// listener stops; a disposed view rents no more, but disposing one never tears down the shared pool, and buffers
/// still out can be returned later.
/// </remarks>
public sealed class TieredMemoryPoolFactory : IMemoryPoolFactory<byte>
{
    private readonly TieredMemoryPool _pool;

    /// <summary>Creates a factory over <paramref name="pool"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="pool"/> is <see langword="null"/>.</exception>
    public TieredMemoryPoolFactory(TieredMemoryPool pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        _pool = pool;
    }

    /// <summary>A pool that rents from the shared pool; its rents are counted under <see cref="MemoryPoolOptions.Owner"/> (or <c>unknown</c>).</summary>
    /// <param name="options">Who asks; only <see cref="MemoryPoolOptions.Owner"/> is used.</param>
    /// <returns>
    /// A view of the shared pool: its <see cref="MemoryPool{T}.Dispose()"/> stops the view renting
    /// (<see cref="ObjectDisposedException"/>) but leaves the shared pool alone, and buffers rented through it may be
    /// disposed later.
    /// </returns>
    public MemoryPool<byte> Create(MemoryPoolOptions? options = null)
    {
        string owner = options?.Owner ?? "unknown";
        return new OwnedMemoryPool(_pool, _pool.CounterFor(owner), owner);
    }
}
