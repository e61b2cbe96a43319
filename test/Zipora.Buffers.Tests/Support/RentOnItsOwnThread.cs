using System;
using System.Buffers;
using System.Diagnostics;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent made on a thread of its own, timed from its start, for the tests of a rent at
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> that must wait for room another thread is making (held by the
/// test meanwhile). A refusal is recorded, not thrown.
/// </summary>
internal sealed class RentOnItsOwnThread
{
    private readonly Thread _thread;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private IMemoryOwner<byte>? _rented;

    public RentOnItsOwnThread(MemoryPool<byte> pool, int size)
    {
        _thread = new Thread(() =>
        {
            try
            {
                _rented = pool.Rent(size);
            }
            catch (InsufficientMemoryException error)
            {
                Refusal = error;
            }

            Waited = _clock.Elapsed;
        });
        _thread.Start();
    }

    /// <summary>The refusal, if the rent was refused.</summary>
    public InsufficientMemoryException? Refusal { get; private set; }

    /// <summary>How long the rent took, served or refused.</summary>
    public TimeSpan Waited { get; private set; }

    /// <summary>Waits up to <paramref name="timeout"/> for the rent to end; whether it did.</summary>
    public bool Join(TimeSpan timeout) => _thread.Join(timeout);

    /// <summary>Returns the buffer, if the rent was served.</summary>
    public void ReturnRented() => _rented?.Dispose();
}
