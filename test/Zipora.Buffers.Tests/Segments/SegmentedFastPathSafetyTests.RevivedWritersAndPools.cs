using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;
using Zipora.Buffers.Native;

#pragma warning disable CA2000, CA1031, CA1849, xUnit1031

namespace Zipora.Buffers.Tests;

/// <summary>
/// Revived writers on the fast path, and the pools the tests write into (among them a foreign arena pool that never
/// reuses a block).
/// </summary>
public sealed unsafe partial class SegmentedFastPathSafetyTests
{
    // ---------------------------------------------------------------------------------------------------------------
    // Revived writers and the tracker's plain give-back.
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void ARevivedWriterUsedOnTheFastPathWhileAnotherThreadSweepsIsCountedOnceAndBalances()
    {
        using var pool = new TieredMemoryPool();
        for (int round = 0; round < 20; round++)
        {
            long leakedBefore = pool.GetStatistics().Segmented.Leaked;
            SegmentedBufferWriter zombie = SegmentedBuffers.CollectARevivedWriter(Options(pool));
            using var start = new Barrier(2);
            bool stop = false;
            Thread sweeper = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                while (!Volatile.Read(ref stop))
                {
                    _ = pool.GetStatistics();
                }
            });
            start.SignalAndWait();
            try
            {
                for (int i = 0; i < 2000; i++)
                {
                    zombie.GetSpan(1)[0] = 1;
                    zombie.Advance(1);
                    if (i % 500 == 0)
                    {
                        Thread.SpinWait(round * 100);
                    }
                }
            }
            catch (ObjectDisposedException)
            {
            }

            zombie.Dispose();
            Volatile.Write(ref stop, true);
            sweeper.Join();
            SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
            Assert.InRange(statistics.Leaked - leakedBefore, 0, 1);
            Assert.Equal(0, statistics.LiveBuffers);
            Assert.Equal(0, statistics.BytesHeld);

            // The tracker (given back or not) must still see the next writer's leak.
            SegmentedBuffers.DropAWriter(Options(pool));
            GC.Collect();
            GC.WaitForPendingFinalizers();
            SegmentedBufferStatistics after = pool.GetStatistics().Segmented;
            Assert.Equal(statistics.Leaked + 1, after.Leaked);
            Assert.Equal(0, after.LiveBuffers);
            Assert.Equal(0, after.BytesHeld);
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(0, pool.GetStatistics().Segmented.LiveBuffers);
    }

    [Fact]
    public void ARevivedWriterDisposedFromTwoThreadsWhileSweepingIsCountedOnce()
    {
        using var pool = new TieredMemoryPool();
        for (int round = 0; round < 20; round++)
        {
            long leakedBefore = pool.GetStatistics().Segmented.Leaked;
            SegmentedBufferWriter zombie = SegmentedBuffers.CollectARevivedWriter(Options(pool));
            using var start = new Barrier(3);
            Thread sweeper = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                _ = pool.GetStatistics();
            });
            Thread disposer = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                zombie.Dispose();
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 10);
            zombie.Dispose();
            sweeper.Join();
            disposer.Join();
            SegmentedBufferStatistics statistics = pool.GetStatistics().Segmented;
            Assert.InRange(statistics.Leaked - leakedBefore, 0, 1);
            Assert.Equal(0, statistics.LiveBuffers);
            Assert.Equal(0, statistics.BytesHeld);
            Assert.Equal(0, pool.GetStatistics().BytesInUse);

            using var next = new SegmentedBufferWriter(Options(pool));
            next.Write(new byte[100]);
            Assert.Equal(1, pool.GetStatistics().Segmented.LiveBuffers);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers.
    // ---------------------------------------------------------------------------------------------------------------

    private static SegmentedBufferOptions Options(TieredMemoryPool pool) =>
        new() { Pool = pool, InitialSegmentSize = 4096, MaxSegmentSize = 4096 };

    private static IDisposable? MakePool(string kind, out MemoryPool<byte>? pool)
    {
        switch (kind)
        {
            case "shared":
                pool = MemoryPool<byte>.Shared;
                return null;
            case "arraypool":
                var arrays = new ArrayPoolMemoryPool();
                pool = arrays;
                return arrays;
            case "arena":
                var arena = new ArenaPool(64 << 20);
                pool = arena;
                return arena;
            case "tiered":
                var tiered = new TieredMemoryPool();
                pool = tiered;
                return tiered;
            case "tiered-pinned":
                var pinned = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true });
                pool = pinned;
                return pinned;
            case "tiered-diagnostics":
                var diagnosed = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All });
                pool = diagnosed;
                return diagnosed;
            default:
                var reuse = new TieredMemoryPool(new TieredMemoryPoolOptions { ReuseOwners = true });
                pool = reuse;
                return reuse;
        }
    }

    /// <summary>A pool over <see cref="ArrayPool{T}.Shared"/> arrays (BlockAddress 0).</summary>
    private sealed class ArrayPoolMemoryPool : MemoryPool<byte>
    {
        public override int MaxBufferSize => 1 << 20;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1) => new Owner(ArrayPool<byte>.Shared.Rent(minBufferSize < 0 ? 4096 : minBufferSize));

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(byte[] array) : IMemoryOwner<byte>
        {
            private byte[]? _array = array;

            public Memory<byte> Memory => _array ?? throw new ObjectDisposedException(nameof(Owner));

            public void Dispose()
            {
                byte[]? array = Interlocked.Exchange(ref _array, null);
                if (array is not null)
                {
                    ArrayPool<byte>.Shared.Return(array);
                }
            }
        }
    }

    /// <summary>
    /// A foreign pool of <see cref="NativeMemoryManager"/> blocks cut from one arena and never reused: each block
    /// remembers when it came back, so a span can be checked against the blocks.
    /// </summary>
    private sealed class ArenaPool : MemoryPool<byte>, INativeMemoryReleaser
    {
        private readonly byte* _arena;
        private readonly long _size;
        private readonly Lock _lock = new();
        private readonly List<(nint Start, int Length, NativeMemoryManager Block)> _blocks = [];
        private readonly Dictionary<NativeMemoryManager, long> _releasedAt = new(ReferenceEqualityComparer.Instance);
        private long _used;
        private long _rents;
        private long _releases;

        public ArenaPool(long size)
        {
            _size = size;
            _arena = (byte*)NativeMemory.Alloc((nuint)size);
        }

        public long Rents => Volatile.Read(ref _rents);

        public long Releases => Volatile.Read(ref _releases);

        public override int MaxBufferSize => 1 << 20;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            int size = minBufferSize < 0 ? 4096 : Math.Max(minBufferSize, 1);
            lock (_lock)
            {
                if (_used + size > _size)
                {
                    throw new InvalidOperationException("arena exhausted (test sizing)");
                }

                nint start = (nint)(_arena + _used);
                _used += size + 64;
                var block = new NativeMemoryManager(start, size, this);
                _blocks.Add((start, size, block));
                _rents++;
                return block;
            }
        }

        public void Release(NativeMemoryManager buffer)
        {
            lock (_lock)
            {
                _releases++;
                _releasedAt[buffer] = _releases;
            }
        }

        /// <summary>Null when [address, address+length) lies in one block not released before <paramref name="releasesBefore"/> was read.</summary>
        public string? Check(nint address, int length, long releasesBefore)
        {
            lock (_lock)
            {
                int lo = 0, hi = _blocks.Count - 1, found = -1;
                while (lo <= hi)
                {
                    int mid = (lo + hi) / 2;
                    if (_blocks[mid].Start <= address)
                    {
                        found = mid;
                        lo = mid + 1;
                    }
                    else
                    {
                        hi = mid - 1;
                    }
                }

                if (found < 0)
                {
                    return $"span at {address:X} before every block";
                }

                (nint start, int size, NativeMemoryManager block) = _blocks[found];
                if (address + length > start + size || length < 0)
                {
                    return $"span [{address - start}, +{length}) past its block of {size}";
                }

                if (_releasedAt.TryGetValue(block, out long at) && at <= releasesBefore)
                {
                    return $"span on a block released (#{at}) before the call started (releases then: {releasesBefore})";
                }

                return null;
            }
        }

        protected override void Dispose(bool disposing)
        {
            // Kept: a test may still hold spans. The arena is tiny against the process and freed at exit.
        }
    }
}
