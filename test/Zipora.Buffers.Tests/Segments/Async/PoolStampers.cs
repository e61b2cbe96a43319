using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Threads renting from one pool as fast as they can while a buffer's copy is pending and its dispose comes: each
/// stamps every block it rents (raw, and through a writer of its own) with its own byte, and checks the stamp before
/// giving it back. A block handed to two owners, or written by a call of a disposed buffer, shows as a broken stamp.
/// </summary>
internal sealed class PoolStampers : IDisposable
{
    private readonly Thread[] _threads;
    private int _stop;
    private int _broken;
    private long _rents;

    public PoolStampers(TieredMemoryPool pool, SegmentedBufferOptions options, int size, int threads = 2)
    {
        _threads = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            byte stamp = (byte)(0xC0 + t);
            _threads[t] = SegmentedBuffers.Started(() => Run(pool, options, size, stamp));
        }
    }

    /// <summary>Stamps found broken so far.</summary>
    public int Broken => Volatile.Read(ref _broken);

    /// <summary>Rents made so far (the race was meaningful only if they ran during it).</summary>
    public long Rents => Interlocked.Read(ref _rents);

    public void Dispose()
    {
        Volatile.Write(ref _stop, 1);
        foreach (Thread thread in _threads)
        {
            thread.Join();
        }
    }

    private void Run(TieredMemoryPool pool, SegmentedBufferOptions options, int size, byte stamp)
    {
        while (Volatile.Read(ref _stop) == 0)
        {
            using (IMemoryOwner<byte> owner = pool.Rent(size))
            {
                Span<byte> span = owner.Memory.Span;
                span.Fill(stamp);
                Thread.SpinWait(50);
                if (span.ContainsAnyExcept(stamp))
                {
                    Interlocked.Increment(ref _broken);
                }
            }

            using (var writer = new SegmentedBufferWriter(options))
            {
                Span<byte> span = writer.GetSpan(size);
                span[..size].Fill(stamp);
                writer.Advance(size);
                if (writer.GetReadOnlySequence().ToArray().AsSpan().ContainsAnyExcept(stamp))
                {
                    Interlocked.Increment(ref _broken);
                }
            }

            Interlocked.Increment(ref _rents);
        }
    }
}
