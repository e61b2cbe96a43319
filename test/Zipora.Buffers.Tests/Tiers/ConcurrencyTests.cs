using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

public sealed class ConcurrencyTests
{
    [Fact]
    public async Task NoTwoLiveBuffersEverOverlapUnderAMultiThreadedStorm()
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { HugeRegionCacheMaxCount = 4, AdaptiveCaches = false });
        var live = new LiveRanges();
        var handoff = new BlockingCollection<(IMemoryOwner<byte> Owner, byte Stamp)>(boundedCapacity: 64);
        int threads = Math.Max(4, Environment.ProcessorCount * 2);
        const int RentsPerThread = 3_000;

        // Half of the buffers are disposed by a different thread than the one that rented them, as a Pipe reader does.
        Task returner = Task.Run(() =>
        {
            foreach ((IMemoryOwner<byte> owner, byte stamp) in handoff.GetConsumingEnumerable())
            {
                VerifyAndDispose(owner, stamp, live);
            }
        });

        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, worker =>
        {
            var random = new Random(worker);
            var held = new List<(IMemoryOwner<byte> Owner, byte Stamp)>();
            for (int i = 0; i < RentsPerThread; i++)
            {
                int size = RandomSize(random);
                IMemoryOwner<byte> owner = pool.Rent(size);
                Assert.True(owner.Memory.Length >= size);
                live.Add(owner);
                byte stamp = (byte)random.Next(1, 256);
                owner.Memory.Span.Fill(stamp);
                held.Add((owner, stamp));

                if (held.Count > 16 || random.Next(4) == 0)
                {
                    int victim = random.Next(held.Count);
                    (IMemoryOwner<byte> Owner, byte Stamp) entry = held[victim];
                    held.RemoveAt(victim);
                    if (random.Next(2) == 0)
                    {
                        handoff.Add(entry);
                    }
                    else
                    {
                        VerifyAndDispose(entry.Owner, entry.Stamp, live);
                    }
                }
            }

            foreach ((IMemoryOwner<byte> owner, byte stamp) in held)
            {
                VerifyAndDispose(owner, stamp, live);
            }
        });

        handoff.CompleteAdding();
        await returner;

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(0, statistics.BytesInUse);
        Assert.Equal((long)threads * RentsPerThread, statistics.Small.Rents + statistics.Medium.Rents + statistics.Large.Rents + statistics.Huge.Rents);
        Assert.Equal(statistics.Small.Rents, statistics.Small.Returns);
        Assert.Equal(statistics.Medium.Rents, statistics.Medium.Returns);
    }

    [Fact]
    public async Task BuffersRentedOnOneThreadAndDisposedOnAnotherAreReusedWithoutGrowingTheCaches()
    {
        var options = new TieredMemoryPoolOptions();
        using var pool = new TieredMemoryPool(options);
        using var handoff = new BlockingCollection<IMemoryOwner<byte>>(boundedCapacity: 256);
        const int Buffers = 200_000;

        Task reader = Task.Factory.StartNew(() =>
        {
            foreach (IMemoryOwner<byte> owner in handoff.GetConsumingEnumerable())
            {
                owner.Dispose();
            }
        }, TaskCreationOptions.LongRunning);

        var writer = new Thread(() =>
        {
            for (int i = 0; i < Buffers; i++)
            {
                IMemoryOwner<byte> owner = pool.Rent(4096);
                owner.Memory.Span[0] = 1;
                handoff.Add(owner);
            }

            handoff.CompleteAdding();
        });
        writer.Start();
        writer.Join();
        await reader;

        TierStatistics medium = pool.GetStatistics().Medium;
        Assert.Equal(Buffers, medium.Returns);

        // At most the hand-off queue, the two threads' caches and the batches in flight are ever live at once;
        // everything else is reuse. Without the depot, the writer would carve a fresh block for every rent.
        long bound = 256 + (2L * options.ThreadCacheMaxBuffers) + 64;
        Assert.InRange(medium.CacheMisses, 1, bound);
        Assert.InRange(medium.BytesRetained, 0, bound * 4096);
    }

    [Fact]
    public void TheCacheOfAThreadThatExitedIsReclaimed()
    {
        using var pool = new TieredMemoryPool();
        var worker = new Thread(() =>
        {
            var owners = new IMemoryOwner<byte>[32];
            for (int i = 0; i < owners.Length; i++)
            {
                owners[i] = pool.Rent(8192);
            }

            Array.ForEach(owners, owner => owner.Dispose());
        });
        worker.Start();
        worker.Join();

        // The statistics sweep finds the exited thread and moves its 32 blocks to the shared depot, with its counts.
        TierStatistics afterExit = pool.GetStatistics().Medium;
        Assert.Equal(32, afterExit.Rents);
        Assert.Equal(32, afterExit.Returns);

        for (int i = 0; i < 32; i++)
        {
            pool.Rent(8192);
        }

        TierStatistics afterReuse = pool.GetStatistics().Medium;
        Assert.Equal(32, afterReuse.CacheMisses);
        Assert.Equal(32, afterReuse.CacheHits);
    }

    [Fact]
    public async Task DisposingThePoolWhileOtherThreadsReturnLosesNothing()
    {
        for (int round = 0; round < 20; round++)
        {
            var pool = new TieredMemoryPool();
            var owners = new ConcurrentQueue<IMemoryOwner<byte>>();
            // Sizes 1 B to 4 MB: every tier has buffers out when the pool goes away.
            for (int i = 0; i < 690; i++)
            {
                owners.Enqueue(pool.Rent(1 << (i % 23)));
            }

            Task[] returners = new Task[3];
            for (int t = 0; t < returners.Length; t++)
            {
                returners[t] = Task.Run(() =>
                {
                    while (owners.TryDequeue(out IMemoryOwner<byte>? owner))
                    {
                        owner.Dispose();
                    }
                });
            }

            pool.Dispose();
            await Task.WhenAll(returners);

            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            Assert.Equal(0, statistics.BytesInUse);
            Assert.Equal(0, statistics.BytesRetained);
        }
    }

    private static int RandomSize(Random random) => random.Next(100) switch
    {
        < 40 => random.Next(1, 1024),
        < 80 => random.Next(1024, 16385),
        < 97 => random.Next(16385, (2 * 1024 * 1024) + 1),
        _ => random.Next((2 * 1024 * 1024) + 1, 6 * 1024 * 1024),
    };

    private static void VerifyAndDispose(IMemoryOwner<byte> owner, byte stamp, LiveRanges live)
    {
        int wrong = owner.Memory.Span.IndexOfAnyExcept(stamp);
        Assert.True(wrong < 0, $"byte {wrong} of a live buffer was overwritten: another live buffer overlaps it");
        live.Remove(owner);
        owner.Dispose();
    }

    /// <summary>The address ranges of the live buffers; adding one that overlaps another fails the test.</summary>
    private sealed class LiveRanges
    {
        private readonly Lock _lock = new();
        private readonly SortedDictionary<nint, nint> _ends = [];

        public void Add(IMemoryOwner<byte> owner)
        {
            nint start = OwnerAddress.Of(owner);
            nint end = start + owner.Memory.Length;
            lock (_lock)
            {
                foreach (KeyValuePair<nint, nint> range in _ends)
                {
                    Assert.False(start < range.Value && range.Key < end, $"[{start:x}, {end:x}) overlaps live [{range.Key:x}, {range.Value:x})");
                }

                _ends.Add(start, end);
            }
        }

        public void Remove(IMemoryOwner<byte> owner)
        {
            lock (_lock)
            {
                Assert.True(_ends.Remove(OwnerAddress.Of(owner)));
            }
        }
    }
}
