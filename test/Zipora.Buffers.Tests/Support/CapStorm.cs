using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Hostile renters at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>, for the tests of the cap with every tier at
/// once: worker threads rent every tier's sizes (a permit per block, so no more of a size is live than the cap was
/// sized for), stamp each buffer, and return on whatever thread comes next; another thread reads the statistics (and
/// with <c>trims</c> calls <see cref="TieredMemoryPool.Trim"/>) every millisecond. Records the refusals, a stamp lost to
/// another owner, a refusal not named as the cap's, and negative figures.
/// </summary>
internal sealed class CapStorm
{
    private readonly TieredMemoryPool _pool;
    private readonly int[] _sizes;
    private readonly SemaphoreSlim[] _permits;
    private readonly string _capText;
    private readonly ConcurrentQueue<(IMemoryOwner<byte> Owner, long Stamp, int Size)> _rented = new();
    private long _stamps;
    private long _rents;

    /// <param name="pool">The pool at its cap.</param>
    /// <param name="sizes">The sizes rented, one per tier.</param>
    /// <param name="permitsPerSize">The most buffers of each size live at once.</param>
    /// <param name="capText">The cap and how it was sized, for the refusals' messages.</param>
    public CapStorm(TieredMemoryPool pool, int[] sizes, int permitsPerSize, string capText)
    {
        _pool = pool;
        _sizes = sizes;
        _permits = [.. sizes.Select(_ => new SemaphoreSlim(permitsPerSize))];
        _capText = capText;
    }

    /// <summary>Rents refused, each with its message and the pool's figures then.</summary>
    public ConcurrentQueue<string> Refusals { get; } = new();

    /// <summary>Broken promises seen: a lost stamp, a refusal not named as the cap's, negative figures.</summary>
    public ConcurrentQueue<string> Failures { get; } = new();

    /// <summary>Rents served.</summary>
    public long Rents => Interlocked.Read(ref _rents);

    /// <summary>The owners still held (after <see cref="Run"/>, before <see cref="ReturnAll"/>).</summary>
    public IEnumerable<IMemoryOwner<byte>> Held => _rented.Select(static item => item.Owner);

    /// <summary>Runs <paramref name="workers"/> renters and the statistics thread for <paramref name="budget"/>; fails if a thread is stuck in the pool.</summary>
    public void Run(int workers, bool trims, TimeSpan budget)
    {
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource(budget);
        var threads = new List<Thread>();
        for (int w = 0; w < workers; w++)
        {
            int seed = w;
            threads.Add(new Thread(() => Rent(new Random(seed), stop.Token)));
        }

        threads.Add(new Thread(() => Watch(trims, stop.Token)));
        threads.ForEach(static thread => thread.Start());
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromSeconds(20)), $"a thread still running {clock.Elapsed} after the start ({budget} budget): stuck in the pool\n{_pool.GetStatistics()}");
        }
    }

    /// <summary>Returns every buffer still held, checking each stamp.</summary>
    public void ReturnAll()
    {
        while (!_rented.IsEmpty)
        {
            ReturnOne();
        }
    }

    private void Rent(Random random, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            if (random.Next(2) == 0 || _rented.IsEmpty)
            {
                RentOne(random.Next(_sizes.Length));
            }
            else
            {
                ReturnOne();
            }
        }
    }

    private void RentOne(int size)
    {
        if (!_permits[size].Wait(0))
        {
            ReturnOne();
            return;
        }

        IMemoryOwner<byte> owner;
        try
        {
            owner = _pool.Rent(_sizes[size]);
        }
        catch (InsufficientMemoryException error)
        {
            _permits[size].Release();
            if (!error.Message.Contains(nameof(TieredMemoryPoolOptions.MaxBytesInUse), StringComparison.Ordinal))
            {
                Failures.Enqueue($"a refusal at the cap, with an allocator that refuses nothing, not named as the cap's: {error.Message}");
            }

            Refusals.Enqueue($"{_sizes[size]} B refused at {_capText}: {error.Message}\n{_pool.GetStatistics()}");
            return;
        }

        long stamp = Interlocked.Increment(ref _stamps);
        SafetyCases.Stamp(owner, stamp, "rented");
        _ = Interlocked.Increment(ref _rents);
        _rented.Enqueue((owner, stamp, size));
    }

    private void ReturnOne()
    {
        if (_rented.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp, int Size) item))
        {
            if (!SafetyCases.HasStamp(item.Owner, item.Stamp, "returned"))
            {
                Failures.Enqueue($"a {_sizes[item.Size]}-byte block lost its stamp {item.Stamp}: another owner wrote into it");
            }

            item.Owner.Dispose();
            _permits[item.Size].Release();
        }
    }

    private void Watch(bool trims, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            if (trims)
            {
                _pool.Trim();
            }

            string? negative = SafetyCases.NegativeFigures(_pool.GetStatistics());
            if (negative is not null)
            {
                Failures.Enqueue($"negative figures: {negative}");
            }

            Thread.Sleep(1);
        }
    }
}
