using System;
using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// <see cref="SteadyStateBenchmarks"/>'s rent, write, dispose of one size, timed in the thread's CPU time rather than
/// wall time: on a shared VM whose other tenants take the cores, BenchmarkDotNet's wall-clock means swing by half,
/// while the CPU time a thread spent on the loop barely moves. Each case runs in a process of its own (so the virtual
/// call site sees one pool, as in BenchmarkDotNet), and the best of 22 rounds of a million operations is reported.
/// </summary>
public static partial class SteadyCpuTimeReport
{
    private const int Operations = 1_000_000;
    private const int WarmupRounds = 3;
    private const int Rounds = 25;
    private const int ThreadCpuClock = 3; // CLOCK_THREAD_CPUTIME_ID

    private static readonly int[] s_sizes = [64, 500, 1024, 4096, 16384, 65536, 1 << 20, 4 << 20, 64 << 20];
    private static readonly string[] s_pools = ["Shared", "TieredMemoryPool", "TieredMemoryPoolReuseOwners"];

    /// <summary>Prints one row per size: ns per operation for each pool and its ratio to <see cref="MemoryPool{T}.Shared"/>.</summary>
    public static void Run()
    {
        Console.WriteLine("| size | `Shared` ns | default ns | default × | `ReuseOwners` ns | `ReuseOwners` × |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (int size in s_sizes)
        {
            var ns = new double[s_pools.Length];
            for (int i = 0; i < s_pools.Length; i++)
            {
                string row = ReportProcess.RunSelf(1, "--steady-cpu-child", s_pools[i], size.ToString(CultureInfo.InvariantCulture));
                ns[i] = double.TryParse(row, CultureInfo.InvariantCulture, out double value) ? value : double.NaN;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size} B | {ns[0]:F2} | {ns[1]:F2} | {ns[1] / ns[0]:F2} | {ns[2]:F2} | {ns[2] / ns[0]:F2} |"));
        }
    }

    /// <summary>Measures one pool at one size and prints the best ns per operation.</summary>
    public static void RunChild(string pool, int size)
    {
        MemoryPool<byte> measured = pool switch
        {
            "Shared" => MemoryPool<byte>.Shared,
            "TieredMemoryPool" => Peers.CreateTieredPool(),
            _ => Peers.CreateTieredPoolReusingOwners(),
        };
        double best = double.MaxValue;
        for (int round = 0; round < Rounds; round++)
        {
            long start = ThreadCpuNanoseconds();
            Loop(measured, size);
            double ns = (ThreadCpuNanoseconds() - start) / (double)Operations;
            best = round < WarmupRounds ? best : Math.Min(best, ns);
        }

        Console.WriteLine(best.ToString("F2", CultureInfo.InvariantCulture));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Loop(MemoryPool<byte> pool, int size)
    {
        for (int i = 0; i < Operations; i++)
        {
            RentWriteDispose(pool, size);
        }
    }

    // Not inlined into the loop, so every operation pays the thread-static lookups a real caller pays.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentWriteDispose(MemoryPool<byte> pool, int size)
    {
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span[0] = 1;
        owner.Dispose();
    }

    private static unsafe long ThreadCpuNanoseconds()
    {
        // struct timespec { long tv_sec; long tv_nsec; } on 64-bit Linux.
        long* time = stackalloc long[2];
        return ClockGetTime(ThreadCpuClock, time) == 0 ? (time[0] * 1_000_000_000) + time[1] : throw new PlatformNotSupportedException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static unsafe partial int ClockGetTime(int clock, long* time);
}
