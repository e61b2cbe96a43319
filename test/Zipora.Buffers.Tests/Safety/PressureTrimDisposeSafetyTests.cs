using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Trims under memory pressure come from the process-wide watcher (a timer, or a finalizer queueing work), so they
/// race everything: rents and returns on every tier, ticks of the pool's idle clock, and the pool's own Dispose. None
/// of that crashes, zeroes or shares a live buffer; the buffers rented before the pool was disposed stay usable until
/// their owners dispose them; the pool then lets go of everything; and a pressure trim of a disposed pool does nothing.
/// </summary>
public sealed class PressureTrimDisposeSafetyTests
{
    private static readonly int[] s_sizes = [16, 640, 1000, 1500, 3000, 5000, 16384, 100_000, 3_000_000];

    public static TheoryData<OwnerMode> Modes => [OwnerMode.Default, OwnerMode.ReuseOwners, OwnerMode.PinnedArrays];

    [Theory]
    [MemberData(nameof(Modes))]
    public void PressureTrimsRacingRentsTicksAndThePoolsDisposeNeverHarmALiveBuffer(OwnerMode mode)
    {
        for (int round = 0; round < 4; round++)
        {
            RaceOnce(mode, disposeAfter: TimeSpan.FromMilliseconds(40 + (round * 30)));
        }
    }

    private static void RaceOnce(OwnerMode mode, TimeSpan disposeAfter)
    {
        var time = new FakeTimeProvider();
        var pool = new TieredMemoryPool(SafetyCases.Options(mode, time));
        IReclaimablePool reclaimable = pool;
        var failures = new ConcurrentQueue<string>();
        var survivors = new ConcurrentQueue<(IMemoryOwner<byte> Owner, long Stamp)>();
        long nextStamp = 0, rents = 0, pressureTrims = 0;
        bool stop = false;

        void Work(int seed)
        {
            var random = new Random(seed);
            var held = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    if (held.Count < 8 && (held.Count == 0 || random.Next(2) == 0))
                    {
                        IMemoryOwner<byte> owner;
                        try
                        {
                            owner = pool.Rent(s_sizes[random.Next(s_sizes.Length)]);
                        }
                        catch (ObjectDisposedException)
                        {
                            // The pool was disposed: what this worker holds must still be intact and usable.
                            break;
                        }

                        long stamp = Interlocked.Increment(ref nextStamp) | (1L << 42);
                        PageDropStormSafetyTests.PatternStorm.Fill(owner.Memory.Span, stamp);
                        held.Add((owner, stamp));
                        Interlocked.Increment(ref rents);
                        continue;
                    }

                    (IMemoryOwner<byte> owner2, long stamp2) = held[^1];
                    held.RemoveAt(held.Count - 1);
                    int wrong = PageDropStormSafetyTests.PatternStorm.FirstWrongByte(owner2.Memory.Span, stamp2);
                    if (wrong >= 0)
                    {
                        failures.Enqueue($"a live buffer {SafetyCases.RangeOf(owner2)} lost its pattern at byte {wrong}");
                    }

                    owner2.Dispose();
                }
            }
            catch (Exception error)
            {
                failures.Enqueue($"worker {seed} threw {error}");
            }

            held.ForEach(survivors.Enqueue);
        }

        var threads = new List<Thread>();
        for (int i = 0; i < 3; i++)
        {
            int seed = i + 1;
            threads.Add(new Thread(() => Work(seed)));
        }

        threads.Add(new Thread(() =>
        {
            try
            {
                // The watcher's pass: a pressure trim, over and over, and on through the pool's dispose.
                while (!Volatile.Read(ref stop))
                {
                    reclaimable.TrimUnderPressure();
                    Interlocked.Increment(ref pressureTrims);
                    Thread.Yield();
                }
            }
            catch (Exception error)
            {
                failures.Enqueue($"the pressure trimmer threw {error}");
            }
        }));
        threads.Add(new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    time.Advance(SafetyCases.IdleDelay / 4);
                    pool.Trim();
                    Thread.Sleep(1);
                }
            }
            catch (Exception error)
            {
                failures.Enqueue($"the ticker threw {error}");
            }
        }));

        threads.ForEach(static thread => thread.Start());
        var elapsed = Stopwatch.StartNew();
        while (elapsed.Elapsed < disposeAfter || Interlocked.Read(ref pressureTrims) < 3 || Interlocked.Read(ref rents) < 100)
        {
            Thread.Sleep(5);
            Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(20), "the storm never got going");
        }

        pool.Dispose();

        // A pressure trim that found the pool live just before the dispose may still finish and count itself; none after.
        Thread.Sleep(20);
        long trimsAtDispose = pool.GetStatistics().PressureTrims;
        Thread.Sleep(20);
        Volatile.Write(ref stop, true);
        threads.ForEach(static thread => thread.Join());

        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));

        // After the dispose, pressure trims were neither run nor counted; every buffer rented before it is intact,
        // usable, and goes back when its owner disposes it.
        Assert.Equal(trimsAtDispose, pool.GetStatistics().PressureTrims);
        while (survivors.TryDequeue(out (IMemoryOwner<byte> Owner, long Stamp) survivor))
        {
            int wrong = PageDropStormSafetyTests.PatternStorm.FirstWrongByte(survivor.Owner.Memory.Span, survivor.Stamp);
            Assert.True(wrong < 0, $"a buffer rented before the pool was disposed ({SafetyCases.RangeOf(survivor.Owner)}) lost its pattern at byte {wrong}");
            survivor.Owner.Memory.Span.Fill(0x77);
            survivor.Owner.Dispose();
        }

        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent(100));
    }
}
