using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The steps of the fault sweep's script over one pool: rents and returns kept as stamped live buffers, threads, bursts,
/// rents to the cap, segmented messages and ticks, each step allowed to throw only what the injected failure documents,
/// and the checks run after each.
/// </summary>
internal sealed class FaultSweepScript(TieredMemoryPool pool, FaultInjectingAllocator allocator, FakeTimeProvider time, FaultKind kind, AllocatorCall call, FaultSweepOutcome outcome)
{
    /// <summary>One size per tier and two medium classes: what the script rents of each.</summary>
    public static readonly int[] Sizes = [100, 4096, 8192, 100_000, 3_000_000];

    /// <summary>The size of the rents that probe the cap.</summary>
    public const int CapProbeSize = 4 << 20;

    private readonly object _lock = new();
    private readonly List<(IMemoryOwner<byte> Owner, long Stamp, OwnerRange Range)> _live = [];
    private long _stamps = 1000;

    public IReadOnlyList<OwnerRange> LiveRanges()
    {
        lock (_lock)
        {
            return [.. _live.Select(static entry => entry.Range)];
        }
    }

    /// <summary>Runs a step; an exception it throws must be one the failure documents.</summary>
    public void Step(string name, bool rents, Action step)
    {
        long background = BackgroundFailures.Count;
        bool injectedBefore = allocator.Injected;
        try
        {
            step();
        }
        catch (Exception error) when (Allowed(error, rents))
        {
        }
        catch (Exception error)
        {
            outcome.Problems.Add($"{name} threw {error.GetType().Name}: {error.Message}\n{error.StackTrace}");
        }

        if (BackgroundFailures.Count != background && !(kind == FaultKind.Throw && BackgroundFailures.Last.Error is InjectedFaultException))
        {
            outcome.Problems.Add($"{name}: background work failed: {BackgroundFailures.Last.Work}: {BackgroundFailures.Last.Error}");
        }

        if (allocator.Injected && !injectedBefore)
        {
            outcome.InjectedAt = name;
        }

        Check(name);
    }

    private bool Allowed(Exception error, bool rents)
    {
        if (error is InjectedFaultException)
        {
            return kind == FaultKind.Throw;
        }

        // A refused map may fail a rent; a refused unmap, hint or protection is no rent's failure.
        return rents && call == AllocatorCall.Map && error is InsufficientMemoryException or OutOfMemoryException;
    }

    /// <summary>Every live owner keeps its stamp, and no two share a byte.</summary>
    public void Check(string name)
    {
        (IMemoryOwner<byte> Owner, long Stamp, OwnerRange Range)[] live;
        lock (_lock)
        {
            live = [.. _live];
        }

        foreach ((IMemoryOwner<byte> owner, long stamp, OwnerRange range) in live)
        {
            if (!SafetyCases.HasStamp(owner, stamp, name))
            {
                outcome.Problems.Add($"{name}: the live owner {range} lost its stamp");
            }
        }

        OwnerRange[] sorted = [.. live.Select(static entry => entry.Range).OrderBy(static range => range.Start)];
        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i - 1].Overlaps(sorted[i]))
            {
                outcome.Problems.Add($"{name}: live owners {sorted[i - 1]} and {sorted[i]} share memory");
            }
        }
    }

    public IMemoryOwner<byte> Rent(int size)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        long stamp = Interlocked.Increment(ref _stamps);
        SafetyCases.Stamp(owner, stamp, "rent");
        lock (_lock)
        {
            _live.Add((owner, stamp, SafetyCases.RangeOf(owner)));
        }

        return owner;
    }

    public void Return(IMemoryOwner<byte> owner)
    {
        lock (_lock)
        {
            _live.RemoveAll(entry => ReferenceEquals(entry.Owner, owner));
        }

        owner.Dispose();
    }

    public List<IMemoryOwner<byte>> Held()
    {
        lock (_lock)
        {
            return [.. _live.Select(static entry => entry.Owner)];
        }
    }

    public void RentEach(int count)
    {
        foreach (int size in Sizes)
        {
            for (int i = 0; i < count; i++)
            {
                Rent(size);
            }
        }
    }

    public void Burst(int size, int count)
    {
        var burst = new List<IMemoryOwner<byte>>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                burst.Add(Rent(size));
            }
        }
        finally
        {
            burst.ForEach(Return);
        }
    }

    public void OnThread(Action work)
    {
        if (FreshThread.Run(work) is { } thrown)
        {
            throw thrown;
        }
    }

    public int RentToTheCap()
    {
        var held = new List<IMemoryOwner<byte>>();
        try
        {
            for (int i = 0; i < 64; i++)
            {
                try
                {
                    held.Add(Rent(CapProbeSize));
                }
                catch (InsufficientMemoryException)
                {
                    return i;
                }
            }

            return -1;
        }
        finally
        {
            held.ForEach(Return);
        }
    }

    public void Segmented()
    {
        using var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        foreach (int length in new[] { 300, 5000, 70_000, 400_000 })
        {
            Span<byte> span = writer.GetSpan(length);
            span[..length].Fill((byte)length);
            writer.Advance(length);
        }

        ReadOnlySequence<byte> sequence = writer.GetReadOnlySequence();
        if (sequence.Length != 300 + 5000 + 70_000 + 400_000)
        {
            outcome.Problems.Add($"segmented writer: {sequence.Length} bytes");
        }

        using var stream = new SegmentedMemoryStream(new SegmentedBufferOptions { Pool = pool });
        byte[] message = new byte[200_000];
        new Random(7).NextBytes(message);
        stream.Write(message);
        stream.Position = 0;
        byte[] back = new byte[message.Length];
        stream.ReadExactly(back);
        if (!back.AsSpan().SequenceEqual(message))
        {
            outcome.Problems.Add("segmented stream: read back other bytes than written");
        }
    }

    public void Advance(int delays)
    {
        for (int i = 0; i < delays; i++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay);
            Check("tick");
        }
    }
}
