using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A user's object whose finalizer brings the pool's objects it holds back to life and goes on using them: a pool
/// dropped without dispose (its own finalizer may have disposed it already), owners never disposed (their blocks'
/// finalizers may have reclaimed them), a segmented writer and an array pool. What the pool documents for objects
/// used after their end (<see cref="ObjectDisposedException"/>) is expected; anything else thrown here, on the
/// finalizer thread, ends the process.
/// </summary>
internal sealed class ResurrectingUser
{
    private static readonly ConcurrentQueue<ResurrectingUser> s_revived = new();
    private static long s_uses;
    private static long s_refusals;

    private readonly TieredMemoryPool _pool;
    private readonly IMemoryOwner<byte> _owner;
    private readonly IMemoryOwner<byte> _region;
    private readonly SegmentedBufferWriter _writer;
    private readonly TieredArrayPool _arrays;

    public ResurrectingUser()
    {
        _pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMilliseconds(20) });
        _owner = _pool.Rent(4096);
        _region = TieredMemoryPool.Shared.Rent(20_000);
        _writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = _pool });
        _writer.Write(new byte[10_000]);
        _arrays = new TieredArrayPool(new TieredArrayPoolOptions());
        _arrays.Return(_arrays.Rent(5000));
    }

    ~ResurrectingUser()
    {
        s_revived.Enqueue(this);
        Use();
    }

    /// <summary>Uses of revived objects so far, and how many of them the pool refused as used after their end.</summary>
    public static (long Uses, long Refusals) Counts => (Interlocked.Read(ref s_uses), Interlocked.Read(ref s_refusals));

    /// <summary>Makes <paramref name="count"/> users and drops them, for the collector to find.</summary>
    public static void Drop(int count)
    {
        for (int i = 0; i < count; i++)
        {
            _ = new ResurrectingUser();
        }
    }

    /// <summary>Uses every revived user again (from a process-exit handler, say).</summary>
    public static void UseTheRevived()
    {
        foreach (ResurrectingUser user in s_revived)
        {
            user.Use();
        }
    }

    private void Use()
    {
        Interlocked.Increment(ref s_uses);
        Try(() => _owner.Memory.Span.Fill(1));
        Try(() => _region.Memory.Span.Fill(2));
        Try(_owner.Dispose);
        Try(_region.Dispose);
        Try(() =>
        {
            using IMemoryOwner<byte> owner = _pool.Rent(20_000);
            owner.Memory.Span.Fill(3);
        });
        Try(() => _writer.Write(new byte[5000]));
        Try(_writer.Dispose);
        Try(() => _arrays.Return(_arrays.Rent(5000)));
        Try(_pool.Dispose);
    }

    private static void Try(Action use)
    {
        try
        {
            use();
        }
        catch (ObjectDisposedException)
        {
            // Documented for a pool, owner or writer used after its end (disposed, or reclaimed by its finalizer).
            Interlocked.Increment(ref s_refusals);
        }
    }
}
