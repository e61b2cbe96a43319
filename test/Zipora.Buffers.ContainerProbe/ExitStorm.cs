using System;
using System.Buffers;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.ContainerProbe;

/// <summary>
/// What a process may be doing with the pools at the moment it ends, for the exit probes: threads renting, writing
/// and returning on every tier (the shared pool, a pool with a short idle delay whose ticks run all the time, an array
/// pool), a thread trimming, thread-pool work doing the same, owners leaked faster than the finalizer reclaims them,
/// a writer's and a stream's asynchronous copies pending on a destination that never completes, and pools dropped
/// without dispose while their buffers are still out.
/// </summary>
/// <remarks>
/// In the probe, so that the process that ends is a plain program (the test runner's handler of unhandled exceptions
/// would keep one alive); public, as <c>ProcessExitTests</c> also starts it inside a collectible plugin context.
/// </remarks>
public static class ExitStorm
{
    private static readonly int[] s_sizes = [100, 4096, 20_000, 300_000, 3 * 1024 * 1024];
    private static int s_running;

    /// <summary>Starts the storm on background threads and returns once every part of it has run at least once.</summary>
    public static void Start()
    {
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Name = "exit-storm", IdleReleaseDelay = TimeSpan.FromMilliseconds(20) });
        var arrays = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.FromMilliseconds(20) });
        for (int i = 0; i < 3; i++)
        {
            int seed = i;
            Background(() => RentAndWrite(TieredMemoryPool.Shared, seed));
            Background(() => RentAndWrite(pool, seed));
        }

        Background(() =>
        {
            while (true)
            {
                pool.Trim();
                TieredMemoryPool.Shared.Trim();
                arrays.Trim();
                Thread.Sleep(1);
            }
        });

        Background(() =>
        {
            // Owners and whole pools dropped with buffers out: the finalizer thread reclaims them while the process ends.
            while (true)
            {
                for (int i = 0; i < 64; i++)
                {
                    _ = TieredMemoryPool.Shared.Rent(s_sizes[i % s_sizes.Length]);
                    _ = pool.Rent(4096);
                }

                var dropped = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMilliseconds(20) });
                _ = dropped.Rent(20_000);
                dropped.Rent(4096).Memory.Span.Fill(3);
                GC.Collect(0);
            }
        });

        for (int i = 0; i < 2; i++)
        {
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    byte[] array = arrays.Rent(50_000);
                    array.AsSpan().Fill(7);
                    arrays.Return(array);
                    TieredArrayPool.Shared.Return(TieredArrayPool.Shared.Rent(5000));
                    using IMemoryOwner<byte> owner = TieredMemoryPool.Shared.Rent(8192);
                    owner.Memory.Span.Fill(9);
                    await Task.Yield();
                }
            });
        }

        // Copies that never finish: each holds its buffer's segments until the process ends.
        var never = new NeverEndingStream();
        var writer = new SegmentedBufferWriter(new SegmentedBufferOptions { Pool = pool });
        writer.Write(new byte[200_000]);
        _ = writer.CopyToAsync(never).AsTask();
        var stream = new SegmentedMemoryStream(new SegmentedBufferOptions());
        stream.Write(new byte[200_000]);
        stream.Position = 0;
        _ = stream.CopyToAsync(never);

        SpinWait.SpinUntil(() => Volatile.Read(ref s_running) >= 6, TimeSpan.FromSeconds(10));
        Thread.Sleep(200);
    }

    /// <summary>An exit code of its own, for the parent to tell the intended exit from any other.</summary>
    public const int ExitCode = 37;

    /// <summary>The message of the unhandled exception that ends the process in the <c>throw</c> mode.</summary>
    public const string IntendedFailure = "the probe's own unhandled exception";

    /// <summary>
    /// The <c>exit</c> scenario: starts the storm, then ends the process as <paramref name="mode"/> says: <c>exit</c>
    /// (Environment.Exit), <c>return</c> (the caller returns the code from Main) or <c>throw</c> (an unhandled exception on
    /// another thread). Returns the code Main returns.
    /// </summary>
    public static int EndTheProcess(string mode)
    {
        Start();
        Console.WriteLine("RESULT started=1");
        switch (mode)
        {
            case "exit":
                Environment.Exit(ExitCode);
                break;
            case "throw":
                var thread = new Thread(static () => throw new InvalidOperationException(IntendedFailure));
                thread.Start();
                thread.Join();
                Thread.Sleep(Timeout.Infinite);
                break;
        }

        return ExitCode;
    }

    private static void RentAndWrite(TieredMemoryPool pool, int seed)
    {
        _ = Interlocked.Increment(ref s_running);
        var random = new Random(seed);
        while (true)
        {
            using IMemoryOwner<byte> owner = pool.Rent(s_sizes[random.Next(s_sizes.Length)]);
            owner.Memory.Span.Fill((byte)seed);
        }
    }

    private static void Background(Action work) => new Thread(() => work()) { IsBackground = true }.Start();
}
