using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Pinned arrays the pool lets go of have their whole pages dropped (MADV_DONTNEED) at the unmap, and the GC then frees
/// and reuses that pinned heap: a workload of every tier's rents and returns, trims, idle ticks, pressure releases, a
/// cap and disposes, beside other objects (pinned and not) allocated into the freed space, in a process of its own with
/// the runtime verifying its heap at every collection and collecting often. Every live buffer and every other object
/// keeps its bytes, and the heap stays sound, while the drops did happen.
/// </summary>
public sealed class PinnedPageDropHeapIntegrityTests
{
    // Every tier, page-sized and off by one around a page, a huge buffer.
    private static readonly object[]?[] s_garbage = new object[64][];

    private static readonly int[] s_sizes = [1, 100, 4000, 4096, 4097, 8192, 16_384, 65_536, 100_000, 1_048_576, 3_000_000];

    [Fact]
    public void LetGoOfPinnedArraysLeaveLiveBuffersAndTheObjectsReusingTheirHeapIntactUnderHeapVerification() =>
        RunVerified(nameof(LetGoOfPinnedArraysLeaveLiveBuffersAndTheObjectsReusingTheirHeapIntactUnderHeapVerification), concurrent: "0");

    [Fact]
    public void LetGoOfPinnedArraysLeaveLiveBuffersAndTheObjectsReusingTheirHeapIntactUnderHeapVerificationWithBackgroundCollections() =>
        RunVerified(nameof(LetGoOfPinnedArraysLeaveLiveBuffersAndTheObjectsReusingTheirHeapIntactUnderHeapVerificationWithBackgroundCollections), concurrent: "1");

    /// <summary>
    /// The same on several threads at once, the pool's own timer letting arrays go every few milliseconds (a 20 ms
    /// delay) while renters at a cap and a trimming thread race it: a block rented from an array as it is let go of
    /// would lose its bytes to the drop.
    /// </summary>
    [Fact]
    public void ArraysLetGoOfByTheTimerTrimsAndTheCapWhileOtherThreadsRentLeaveEveryLiveBufferIntact()
    {
        Skip.When(!OperatingSystem.IsLinux(), "pages are dropped on Linux only");
        if (IsolatedProcess.RunsElsewhere(
            typeof(PinnedPageDropHeapIntegrityTests),
            nameof(ArraysLetGoOfByTheTimerTrimsAndTheCapWhileOtherThreadsRentLeaveEveryLiveBufferIntact),
            ("DOTNET_HeapVerify", "1"),
            ("DOTNET_gcConcurrent", "1"),
            ("DOTNET_gcServer", "0")))
        {
            return;
        }

        var allocator = (PinnedArrayPageAllocator)PageAllocator.PinnedArrays;
        long droppedBefore = allocator.DroppedBytes;
        const int cap = 48 * 1024 * 1024;
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { UsePinnedArrays = true, IdleReleaseDelay = TimeSpan.FromMilliseconds(20), MaxBytesInUse = cap });
        // Until enough buffers were checked across enough let-go arrays, within a bound for a busy machine.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(4);
        long checkedBuffers = 0;
        bool Going() => DateTime.UtcNow < deadline && (Volatile.Read(ref checkedBuffers) < 2000 || allocator.DroppedBytes - droppedBefore < 256L * 1024 * 1024);
        void Renter(int seed)
        {
            var random = new Random(seed);
            var live = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            var bystanders = new List<(byte[] Array, byte Fill)>();
            long stamp = (long)seed << 32;
            while (Going())
            {
                int size = s_sizes[random.Next(s_sizes.Length)];
                if (live.Count < 8 && random.Next(2) == 0)
                {
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    Fill(owner.Memory.Span, ++stamp);
                    live.Add((owner, stamp));
                }
                else if (live.Count > 0)
                {
                    int at = random.Next(live.Count);
                    Verify(live[at].Owner.Memory.Span, live[at].Stamp, "a live buffer");
                    live[at].Owner.Dispose();
                    live.RemoveAt(at);
                    Interlocked.Increment(ref checkedBuffers);
                }

                AllocateBystanders(random, bystanders);
            }

            VerifyAll(live, bystanders);
            live.ForEach(held => held.Owner.Dispose());
        }

        void Trimmer()
        {
            int turn = 0;
            while (Going())
            {
                if (turn++ % 2 == 0)
                {
                    pool.Trim();
                }
                else
                {
                    ((IReclaimablePool)pool).TrimUnderPressure();
                }

                Thread.Sleep(1);
            }
        }

        RunOnThreads(() => Renter(1), () => Renter(2), () => Renter(3), Trimmer);
        long dropped = allocator.DroppedBytes - droppedBefore;
        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"{checkedBuffers} buffers checked, dropped {dropped} bytes of let-go pinned arrays, {GC.CollectionCount(0)} collections"));
        Assert.True(dropped > 64L * 1024 * 1024, $"only {dropped} bytes of let-go pinned arrays were dropped: the workload did not test the drop");
        Assert.True(checkedBuffers > 500, $"only {checkedBuffers} buffers were checked");
    }

    /// <summary>Runs each action on a thread of its own, waits for all, and throws the first failure.</summary>
    private static void RunOnThreads(params Action[] actions)
    {
        var failures = new Exception?[actions.Length];
        var threads = new Thread[actions.Length];
        for (int i = 0; i < actions.Length; i++)
        {
            int index = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    actions[index]();
                }
                catch (Exception failure)
                {
                    // Passed on below, on the test's thread.
                    failures[index] = failure;
                }
            });
            threads[i].Start();
        }

        Array.ForEach(threads, thread => thread.Join());
        Exception? first = Array.Find(failures, failure => failure is not null);
        if (first is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }
    }

    private static void RunVerified(string method, string concurrent)
    {
        Skip.When(!OperatingSystem.IsLinux(), "pages are dropped on Linux only");
        if (IsolatedProcess.RunsElsewhere(
            typeof(PinnedPageDropHeapIntegrityTests),
            method,
            ("DOTNET_HeapVerify", "1"),
            ("DOTNET_GCgen0size", "0x80000"),
            ("DOTNET_gcConcurrent", concurrent),
            ("DOTNET_gcServer", "0")))
        {
            return;
        }

        var allocator = (PinnedArrayPageAllocator)PageAllocator.PinnedArrays;
        long droppedBefore = allocator.DroppedBytes;
        int collectionsBefore = GC.CollectionCount(0);
        var random = new Random(7);
        var bystanders = new List<(byte[] Array, byte Fill)>();
        long stamp = 1;

        for (int round = 0; round < 4; round++)
        {
            var time = new FakeTimeProvider();
            long cap = round % 2 == 0 ? 0 : 16 * 1024 * 1024;
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
            {
                UsePinnedArrays = true,
                TimeProvider = time,
                IdleReleaseDelay = SafetyCases.IdleDelay,
                MaxBytesInUse = cap,
            });
            var live = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
            long liveBytes = 0;
            for (int step = 0; step < 500; step++)
            {
                int size = s_sizes[random.Next(s_sizes.Length)];

                // At the cap, rents of other lengths let go of the arrays waiting out their delay; what is held stays
                // well under it, so no rent is refused.
                if (live.Count < 24 && (cap == 0 || liveBytes + size <= cap / 3) && random.Next(3) != 0)
                {
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    Fill(owner.Memory.Span, stamp);
                    live.Add((owner, stamp++));
                    liveBytes += owner.Memory.Length;
                }
                else if (live.Count > 0)
                {
                    int at = random.Next(live.Count);
                    Verify(live[at].Owner.Memory.Span, live[at].Stamp, "a live buffer");
                    liveBytes -= live[at].Owner.Memory.Length;
                    live[at].Owner.Dispose();
                    live.RemoveAt(at);
                }

                AllocateBystanders(random, bystanders);
                switch (step % 50)
                {
                    case 10:
                        pool.Trim();
                        break;
                    case 20:
                        SafetyCases.Advance(time, SafetyCases.IdleDelay + (SafetyCases.IdleDelay / 4));
                        break;
                    case 30:
                        ((IReclaimablePool)pool).TrimUnderPressure();
                        break;
                    case 40:
                        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true);
                        break;
                    default:
                        // Collections far more often than the workload's garbage would start them (the runtime's gen0
                        // budget knobs did not shorten it here), each verifying the heap.
                        if (step % 5 == 0)
                        {
                            GC.Collect(step % 3 == 0 ? 1 : 0, GCCollectionMode.Forced, blocking: true);
                        }

                        break;
                }

                if (step % 100 == 99)
                {
                    VerifyAll(live, bystanders);
                }
            }

            VerifyAll(live, bystanders);

            // Half the rounds dispose the pool with buffers still out, returned after it: let go of at once.
            if (round % 2 == 0)
            {
                live.ForEach(held => held.Owner.Dispose());
                pool.Dispose();
            }
            else
            {
                pool.Dispose();
                live.ForEach(held => held.Owner.Dispose());
            }

            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }

        VerifyAll([], bystanders);
        long dropped = allocator.DroppedBytes - droppedBefore;
        int collections = GC.CollectionCount(0) - collectionsBefore;
        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"dropped {dropped} bytes of let-go pinned arrays, {collections} collections, {GC.GetTotalPauseDuration().TotalMilliseconds:F0} ms paused, {bystanders.Count} bystanders"));
        Assert.True(dropped > 64L * 1024 * 1024, $"only {dropped} bytes of let-go pinned arrays were dropped: the workload did not test the drop");
        Assert.True(collections > 200, $"only {collections} collections ran");
    }

    /// <summary>Other objects take the freed pinned heap: pinned arrays of many sizes, and some on the ordinary heap.</summary>
    private static void AllocateBystanders(Random random, List<(byte[] Array, byte Fill)> bystanders)
    {
        int length = random.Next(4) switch
        {
            0 => random.Next(1, 64),
            1 => random.Next(64, 8192),
            2 => random.Next(8192, 128 * 1024),
            _ => random.Next(128 * 1024, 2 * 1024 * 1024),
        };
        byte fill = (byte)random.Next(1, 256);
        // Garbage on the ordinary heap too, so gen0 collections run often among the pinned heap's (kept in a ring:
        // one that does not escape would be allocated on the stack).
        s_garbage[random.Next(s_garbage.Length)] = new object[random.Next(256, 2048)];
        byte[] array = random.Next(3) == 0 ? new byte[length] : GC.AllocateUninitializedArray<byte>(length, pinned: true);
        array.AsSpan().Fill(fill);
        if (bystanders.Count >= 64)
        {
            int at = random.Next(bystanders.Count);
            Assert.True(bystanders[at].Array.AsSpan().IndexOfAnyExcept(bystanders[at].Fill) < 0, "a bystander lost its bytes");
            bystanders[at] = (array, fill);
        }
        else
        {
            bystanders.Add((array, fill));
        }
    }

    private static void VerifyAll(List<(IMemoryOwner<byte> Owner, long Stamp)> live, List<(byte[] Array, byte Fill)> bystanders)
    {
        foreach ((IMemoryOwner<byte> owner, long stamp) in live)
        {
            Verify(owner.Memory.Span, stamp, "a live buffer");
        }

        foreach ((byte[] array, byte fill) in bystanders)
        {
            int wrong = array.AsSpan().IndexOfAnyExcept(fill);
            Assert.True(wrong < 0, $"a bystander of {array.Length} bytes lost its bytes at {wrong}");
        }
    }

    private static void Fill(Span<byte> span, long stamp)
    {
        span.Fill((byte)(stamp | 1));
        if (span.Length >= 2 * sizeof(long))
        {
            BitConverter.TryWriteBytes(span, stamp);
            BitConverter.TryWriteBytes(span[^sizeof(long)..], stamp);
        }
    }

    private static void Verify(Span<byte> span, long stamp, string what)
    {
        byte fill = (byte)(stamp | 1);
        if (span.Length >= 2 * sizeof(long))
        {
            Assert.Equal(stamp, BitConverter.ToInt64(span));
            Assert.Equal(stamp, BitConverter.ToInt64(span[^sizeof(long)..]));
            span = span[sizeof(long)..^sizeof(long)];
        }

        int wrong = span.IndexOfAnyExcept(fill);
        Assert.True(wrong < 0, $"{what} of stamp {stamp} lost its bytes at {wrong}");
    }
}
