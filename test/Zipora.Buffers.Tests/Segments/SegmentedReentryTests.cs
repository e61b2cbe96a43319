using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Which message a refused call gets: the writer's own calls do not record their thread in the guard (they run no
/// user code with a <see cref="TieredMemoryPool"/>), so a call they refuse is on another thread; with another pool
/// they may run its code, and a call coming back from there on the same thread is told it re-entered.
/// </summary>
public sealed class SegmentedReentryTests
{
    [Fact]
    public void AForeignPoolCallingBackIntoTheWriterFromItsRentIsToldItReentered()
    {
        SegmentedBufferWriter? writer = null;
        Exception? inside = null;
        var pool = new CallbackPool(() => inside = Record.Exception(() => _ = writer!.Length));
        writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });

        writer.GetMemory(100);

        InvalidOperationException error = Assert.IsType<InvalidOperationException>(inside);
        Assert.Contains("from inside one of its own calls on this thread", error.Message, StringComparison.Ordinal);
        writer.Dispose();
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void ACallRefusedByAnotherThreadsGrowthIsToldTwoThreads()
    {
        using var pool = new TieredMemoryPool();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64 });
        string? message = null;
        using var stop = new CancellationTokenSource();
        var grower = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    writer.Reset();
                }
                catch (InvalidOperationException)
                {
                    // This thread met the other one inside its Advance: the other side of what the test proves.
                }
            }
        }) { IsBackground = true };
        grower.Start();

        // Until the two threads meet: on a loaded machine the other thread may not run for a while (a million tries
        // were not always enough in a full suite on 2 cores).
        var patience = System.Diagnostics.Stopwatch.StartNew();
        while (message is null && patience.Elapsed < TimeSpan.FromSeconds(30))
        {
            try
            {
                writer.Advance(0);
            }
            catch (InvalidOperationException error)
            {
                message = error.Message;
            }
        }

        stop.Cancel();
        grower.Join();
        writer.Dispose();
        Assert.NotNull(message);
        Assert.Contains("used by two threads at once", message, StringComparison.Ordinal);
    }

    /// <summary>A pool of plain arrays that runs a callback inside each rent, as a user's pool might.</summary>
    private sealed class CallbackPool(Action onRent) : MemoryPool<byte>
    {
        private int _outstanding;

        public int Outstanding => Volatile.Read(ref _outstanding);

        public override int MaxBufferSize => int.MaxValue;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            onRent();
            Interlocked.Increment(ref _outstanding);
            return new Owner(this, new byte[Math.Max(minBufferSize, 1)]);
        }

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(CallbackPool pool, byte[] array) : IMemoryOwner<byte>
        {
            private int _disposed;

            public Memory<byte> Memory => array;

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) == 0)
                {
                    Interlocked.Decrement(ref pool._outstanding);
                }
            }
        }
    }
}
