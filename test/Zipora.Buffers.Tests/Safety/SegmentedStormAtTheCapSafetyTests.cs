using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Writers and streams of every tier's sizes (reset, consumed, emptied by <c>SetLength(0)</c>) and plain rents on
/// threads that start and exit throughout, at a <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> they keep hitting,
/// beside trims of each kind: every byte reads back as written (no block with two owners), and once quiet the pool
/// balances, holds nothing, and serves a rent of the whole cap (nothing parked or cached out of its trims' reach).
/// </summary>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class SegmentedStormAtTheCapSafetyTests
{
    private const string NoTrims = "none";
    private const string UsersTrims = "Trim";
    private const string PressureTrims = "pressure, no idle cap";

    private const int FinalRent = 6 * 1024 * 1024;


    [Theory]
    [InlineData(false, NoTrims)]
    [InlineData(true, NoTrims)]
    [InlineData(false, UsersTrims)]
    [InlineData(true, UsersTrims)]
    [InlineData(false, PressureTrims)]
    public void AStormAtTheCapOnChurningThreadsLosesNoByteAndLeavesTheWholeCapRentableWhenQuiet(bool reuseOwners, string trimmer)
    {
        long cap = SafetyCases.BytesMappedFor(FinalRent);
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            EnableHugepages = false,
            TimeProvider = time,
            IdleReleaseDelay = SafetyCases.IdleDelay,
            MaxBytesInUse = cap,
            MaxRetainedBytes = trimmer == PressureTrims ? 0 : 64 * 1024 * 1024,
            ReuseOwners = reuseOwners,
        });
        var options = new SegmentedBufferOptions { Pool = pool };
        var failures = new ConcurrentQueue<string>();
        long refusals = 0;
        long messages = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        int[] sizes = [100, 700, 1024, 3000, 4096, 9000, 20_000, 70_000, 300_000, 2_500_000];

        void Worker(int seed)
        {
            var random = new Random(seed);
            int count = random.Next(5, 60);
            for (int m = 0; m < count && !stop.IsCancellationRequested; m++)
            {
                byte stamp = (byte)random.Next(1, 255);
                try
                {
                    if (random.Next(3) == 0)
                    {
                        using var stream = new SegmentedMemoryStream(options);
                        int length = sizes[random.Next(sizes.Length)];
                        stream.Write(SegmentedBuffers.Filled(length, stamp));
                        if (random.Next(2) == 0)
                        {
                            stream.SetLength(0);
                            stream.Write(SegmentedBuffers.Filled(length / 2 + 1, stamp));
                        }

                        byte[] back = stream.ToArray();
                        if (back.AsSpan().IndexOfAnyExcept(stamp) >= 0)
                        {
                            failures.Enqueue($"stream {stamp} read back other bytes");
                        }
                    }
                    else
                    {
                        using var writer = new SegmentedBufferWriter(options);
                        for (int step = random.Next(1, 4); step > 0; step--)
                        {
                            int length = sizes[random.Next(sizes.Length)];
                            Span<byte> span = writer.GetSpan(length);
                            span[..length].Fill(stamp);
                            writer.Advance(length);
                            ReadOnlySequence<byte> seq = writer.GetReadOnlySequence();
                            foreach (ReadOnlyMemory<byte> part in seq)
                            {
                                if (part.Span.IndexOfAnyExcept(stamp) >= 0)
                                {
                                    failures.Enqueue($"writer {stamp} read back other bytes");
                                    break;
                                }
                            }

                            switch (random.Next(3))
                            {
                                case 0:
                                    writer.Reset();
                                    break;
                                case 1:
                                    writer.Consume(writer.Length);
                                    break;
                                default:
                                    break;
                            }
                        }
                    }

                    Interlocked.Increment(ref messages);
                }
                catch (InsufficientMemoryException)
                {
                    Interlocked.Increment(ref refusals);
                }

                if (random.Next(4) == 0)
                {
                    try
                    {
                        using IMemoryOwner<byte> owner = pool.Rent(sizes[random.Next(sizes.Length)]);
                        owner.Memory.Span.Fill(stamp);
                        if (owner.Memory.Span.IndexOfAnyExcept(stamp) >= 0)
                        {
                            failures.Enqueue("a rented block changed");
                        }
                    }
                    catch (InsufficientMemoryException)
                    {
                        Interlocked.Increment(ref refusals);
                    }
                }
            }
        }

        var spawners = new List<Thread>();
        for (int s = 0; s < 3; s++)
        {
            int spawner = s;
            spawners.Add(SegmentedBuffers.Started(() =>
            {
                int seed = spawner * 100_000;
                while (!stop.IsCancellationRequested)
                {
                    var worker = new Thread(() => Worker(Interlocked.Increment(ref seed)));
                    worker.Start();
                    worker.Join();
                }
            }));
        }

        Thread trims = SegmentedBuffers.Started(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (trimmer == UsersTrims)
                {
                    pool.Trim();
                }
                else if (trimmer == PressureTrims)
                {
                    ((IReclaimablePool)pool).TrimUnderPressure();
                }

                _ = pool.GetStatistics();
                Thread.Sleep(1);
            }
        });
        while (!stop.IsCancellationRequested)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            Thread.Sleep(5);
        }

        spawners.ForEach(static t => t.Join());
        trims.Join();

        Assert.True(failures.IsEmpty, string.Join("\n", failures));
        Assert.True(refusals > 0, $"{messages} messages and no refusal: the storm never reached the cap");
        TieredMemoryPoolStatistics quiet = pool.GetStatistics();
        Assert.Null(SafetyCases.NegativeFigures(quiet));
        Assert.Equal(0, quiet.BytesInUse);
        Assert.Equal(0, quiet.Segmented.BytesHeld);
        Assert.Equal(0, quiet.Segmented.LiveBuffers);
        Assert.Equal(quiet.Medium.Rents, quiet.Medium.Returns);
        Assert.Equal(quiet.Small.Rents, quiet.Small.Returns);
        Assert.Equal(quiet.Large.Rents, quiet.Large.Returns);
        Assert.Equal(quiet.Huge.Rents, quiet.Huge.Returns);

        // Quiet now: the whole cap must be rentable.
        IMemoryOwner<byte> whole;
        try
        {
            whole = pool.Rent(FinalRent);
        }
        catch (InsufficientMemoryException error)
        {
            Assert.Fail($"{messages} messages, {refusals} refusals; quiet pool refused the whole cap: {error.Message}\n{pool.GetStatistics()}");
            throw;
        }

        whole.Dispose();
        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
    }
}
