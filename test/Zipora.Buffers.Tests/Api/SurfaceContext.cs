using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What one hostile call runs against: a pool of its own, a writer and a stream holding data over it, a block of
/// native memory for a caller-owned manager; and the check, after all of it is disposed, that the pool lost nothing.
/// </summary>
internal sealed unsafe class SurfaceContext : IDisposable
{
    /// <summary>Bytes of the caller-owned block a hostile <see cref="NativeMemoryManager"/> may wrap.</summary>
    public const int NativeBlockLength = 4096;

    private readonly List<IDisposable> _disposables = [];
    private readonly List<Action> _cleanups = [];
    private bool _disposed;

    public SurfaceContext()
    {
        Pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "api-surface" });
        Options = new SegmentedBufferOptions { Pool = Pool };
        NativeBlock = (nint)NativeMemory.AllocZeroed(NativeBlockLength);
        _cleanups.Add(() => NativeMemory.Free((void*)NativeBlock));
    }

    public TieredMemoryPool Pool { get; }

    public SegmentedBufferOptions Options { get; }

    public nint NativeBlock { get; }

    /// <summary>A writer over <see cref="Pool"/> holding 10,000 bytes in three segments.</summary>
    public SegmentedBufferWriter Writer(bool disposed = false)
    {
        var writer = Track(new SegmentedBufferWriter(Options));
        for (int i = 0; i < 3; i++)
        {
            Span<byte> span = writer.GetSpan(4000);
            span[..3333].Fill((byte)i);
            writer.Advance(3333);
        }

        if (disposed)
        {
            writer.Dispose();
        }

        return writer;
    }

    /// <summary>A stream over <see cref="Pool"/> holding 10,000 bytes, its position in the middle.</summary>
    public SegmentedMemoryStream Stream(bool disposed = false)
    {
        var stream = Track(new SegmentedMemoryStream(Options));
        stream.Write(new byte[10_000]);
        stream.Position = 5_000;
        if (disposed)
        {
            stream.Dispose();
        }

        return stream;
    }

    /// <summary>A pool of its own, disposed: a hostile argument for whatever takes a pool.</summary>
    public TieredMemoryPool DisposedPool()
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "api-surface-disposed" });
        pool.Dispose();
        return pool;
    }

    /// <summary>Disposes <paramref name="disposable"/> before the consistency check.</summary>
    public T Track<T>(T disposable)
        where T : IDisposable
    {
        _disposables.Add(disposable);
        return disposable;
    }

    /// <summary>Runs <paramref name="cleanup"/> before the consistency check (an unmap of what a TryMap mapped).</summary>
    public void OnDispose(Action cleanup) => _cleanups.Add(cleanup);

    /// <summary>
    /// Disposes everything made for the call, then checks the pool: every tier still rents and returns, its counters
    /// balance, and no byte and no segmented buffer is still counted in use (nothing the hostile call touched was lost).
    /// </summary>
    public void AssertNothingLost(string call)
    {
        Dispose();
        BadInputTests.AssertConsistent(Pool);
        TieredMemoryPoolStatistics statistics = Pool.GetStatistics();
        Assert.True(statistics.BytesInUse == 0, $"{call}: {statistics.BytesInUse} bytes still in use after everything was disposed.\n{statistics}");
        Assert.True(statistics.Segmented.LiveBuffers == 0 && statistics.Segmented.BytesHeld == 0, $"{call}: segmented buffers still counted: {statistics.Segmented}");
        Pool.Dispose();
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (IDisposable disposable in _disposables)
        {
            disposable.Dispose();
        }

        foreach (Action cleanup in _cleanups)
        {
            cleanup();
        }
    }

    /// <summary>An owner rented from <see cref="Pool"/>, whose concrete type's members are on the surface too.</summary>
    public IMemoryOwner<byte> Owner(bool disposed = false)
    {
        IMemoryOwner<byte> owner = Track(Pool.Rent(4096));
        if (disposed)
        {
            owner.Dispose();
        }

        return owner;
    }
}
