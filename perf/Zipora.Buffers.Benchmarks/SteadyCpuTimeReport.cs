using System;
using System.Buffers;
using System.Globalization;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// <see cref="SteadyStateBenchmarks"/>'s rent, write, dispose of one size, timed in the thread's CPU time rather than
/// wall time: on a shared VM whose other tenants take the cores, BenchmarkDotNet's wall-clock means swing by half,
/// while the CPU time a thread spent on the loop barely moves. Each case runs in a process of its own (so the virtual
/// call site sees one pool, as in BenchmarkDotNet), and the best of 22 rounds of a million operations is reported,
/// best of three processes per case; the floors are <see cref="MinimalNativePool"/>'s two modes, timed the same way.
/// A second table times rent and dispose alone at 4 KB (the memory untouched: issue 15's first goal) against the floor
/// and <see cref="MinimalSafeNativePool"/>, the floor keeping the promises the reusing mode keeps on its fast path.
/// The array pools' rent, write, return (<see cref="ArrayPoolBenchmarks"/>'s single pair) is timed the same way, in
/// five processes per case, the pools' processes alternating: the best process of each pool is compared, since the
/// machine's other tenants only ever add time, and one process's code placement alone moves a 10 ns case by several
/// percent.
/// </summary>
public static partial class SteadyCpuTimeReport
{
    private const int Operations = 1_000_000;
    private const int WarmupRounds = 3;
    private const int Rounds = 25;
    private const int ThreadCpuClock = 3; // CLOCK_THREAD_CPUTIME_ID

    private static readonly int[] s_sizes = [64, 500, 1024, 4096, 16384, 65536, 1 << 20, 4 << 20, 64 << 20];
    private static readonly string[] s_pools = ["Shared", "TieredMemoryPool", "TieredMemoryPoolReuseOwners", "FloorSafeReusedOwners", "FloorReusedOwners", "FloorOwnerPerRent", "FloorSafeOwnerPerRent"];
    private static readonly string[] s_untouchedPools = ["Shared", "TieredMemoryPoolReuseOwners", "FloorSafeReusedOwners", "FloorReusedOwners"];
    private const int UntouchedSize = 4096;
    private static readonly int[] s_arraySizes = [16, 64, 1024, 4096, 16384, 65536, 1 << 20, 4 << 20, 64 << 20];
    private static readonly string[] s_arrayPools = ["ArrayPool.Shared", "TieredArrayPool"];
    private const int ArrayProcesses = 5;
    private const int PoolProcesses = 3;

    /// <summary>Prints one row per size: ns per operation for each pool and its ratio to <see cref="MemoryPool{T}.Shared"/>.</summary>
    public static void Run()
    {
        Console.WriteLine("| size | `Shared` ns | default ns | default × | `ReuseOwners` ns | `ReuseOwners` × | floor keeping the promises × | `ReuseOwners` × that floor | floor, reused owners × | floor, owner per rent × | floor keeping the promises, owner per rent × | default × that floor |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (int size in s_sizes)
        {
            double[] ns = [.. MeasureAlternating(s_pools, size, PoolProcesses).Select(static values => values[0])];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size} B | {ns[0]:F2} | {ns[1]:F2} | {ns[1] / ns[0]:F2} | {ns[2]:F2} | {ns[2] / ns[0]:F2} | {ns[3] / ns[0]:F2} | {ns[2] / ns[3]:F2} | {ns[4] / ns[0]:F2} | {ns[5] / ns[0]:F2} | {ns[6] / ns[0]:F2} | {ns[1] / ns[6]:F2} |"));
        }

        Console.WriteLine();
        Console.WriteLine("| 4 KB, memory untouched | `Shared` ns | `ReuseOwners` ns | × `Shared` | floor keeping the promises ns | × `Shared` | floor ns | × `Shared` |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        double[] untouched = [.. MeasureAlternating(s_untouchedPools, UntouchedSize, PoolProcesses, "untouched").Select(static values => values[0])];
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| rent + dispose | {untouched[0]:F2} | {untouched[1]:F2} | {untouched[1] / untouched[0]:F2} | {untouched[2]:F2} | {untouched[2] / untouched[0]:F2} | {untouched[3]:F2} | {untouched[3] / untouched[0]:F2} |"));

        Console.WriteLine();
        Console.WriteLine("| size | `ArrayPool.Shared` ns, each process | `TieredArrayPool` ns, each process | ratio of the best |");
        Console.WriteLine("|---|---|---|---|");
        foreach (int size in s_arraySizes)
        {
            double[][] ns = MeasureAlternating(s_arrayPools, size, ArrayProcesses);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size} B | {Joined(ns[0])} | {Joined(ns[1])} | {ns[1][0] / ns[0][0]:F3} |"));
        }
    }

    /// <summary>
    /// Per pool, the best ns per operation of each of <paramref name="processes"/> child processes (sorted), the pools'
    /// processes alternating so a slow spell of the machine falls on both.
    /// </summary>
    private static double[][] MeasureAlternating(string[] pools, int size, int processes, string workload = "write")
    {
        double[][] ns = [.. pools.Select(_ => new double[processes])];
        for (int i = 0; i < processes; i++)
        {
            for (int pool = 0; pool < pools.Length; pool++)
            {
                string row = ReportProcess.RunSelf(1, "--steady-cpu-child", pools[pool], size.ToString(CultureInfo.InvariantCulture), workload);
                ns[pool][i] = double.TryParse(row, CultureInfo.InvariantCulture, out double value) ? value : double.NaN;
            }
        }

        foreach (double[] values in ns)
        {
            Array.Sort(values);
        }

        return ns;
    }

    private static string Joined(double[] values) => string.Join(", ", values.Select(static v => v.ToString("F2", CultureInfo.InvariantCulture)));

    /// <summary>
    /// Measures one pool at one size and prints the best ns per operation; <paramref name="untouched"/> leaves the
    /// memory alone (rent and dispose only: the pool's own overhead, issue 15's first goal).
    /// </summary>
    public static void RunChild(string pool, int size, bool untouched)
    {
        if (pool.Contains("Array", StringComparison.Ordinal))
        {
            ArrayPool<byte> arrays = pool == "TieredArrayPool" ? new TieredArrayPool() : ArrayPool<byte>.Shared;
            Console.WriteLine(BestOfRounds(() => ArrayLoop(arrays, size)).ToString("F2", CultureInfo.InvariantCulture));
            return;
        }

        MemoryPool<byte> measured = pool switch
        {
            "Shared" => MemoryPool<byte>.Shared,
            "TieredMemoryPool" => Peers.CreateTieredPool(),
            "FloorReusedOwners" => new MinimalNativePool(size, safeOwners: false),
            "FloorOwnerPerRent" => new MinimalNativePool(size, safeOwners: true),
            "FloorSafeReusedOwners" => new MinimalSafeNativePool(size),
            "FloorSafeOwnerPerRent" => new MinimalSafeNativePool(size, ownerPerRent: true),
            _ => Peers.CreateTieredPoolReusingOwners(),
        };
        Action loop = untouched ? () => UntouchedLoop(measured, size) : () => Loop(measured, size);
        Console.WriteLine(BestOfRounds(loop).ToString("F2", CultureInfo.InvariantCulture));
    }

    /// <summary>The best ns per operation of the rounds after the warm-up ones.</summary>
    private static double BestOfRounds(Action loop)
    {
        double best = double.MaxValue;
        for (int round = 0; round < Rounds; round++)
        {
            long start = ThreadCpuNanoseconds();
            loop();
            double ns = (ThreadCpuNanoseconds() - start) / (double)Operations;
            best = round < WarmupRounds ? best : Math.Min(best, ns);
        }

        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ArrayLoop(ArrayPool<byte> pool, int size)
    {
        for (int i = 0; i < Operations; i++)
        {
            RentWriteReturn(pool, size);
        }
    }

    // As RentWriteDispose: not inlined, so each pair pays the pool's thread-static lookup as a caller does.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentWriteReturn(ArrayPool<byte> pool, int size)
    {
        byte[] array = pool.Rent(size);
        array[0] = 1;
        pool.Return(array);
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

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void UntouchedLoop(MemoryPool<byte> pool, int size)
    {
        for (int i = 0; i < Operations; i++)
        {
            RentDispose(pool, size);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentDispose(MemoryPool<byte> pool, int size) => pool.Rent(size).Dispose();

    internal static unsafe long ThreadCpuNanoseconds()
    {
        // struct timespec { long tv_sec; long tv_nsec; } on 64-bit Linux.
        long* time = stackalloc long[2];
        return ClockGetTime(ThreadCpuClock, time) == 0 ? (time[0] * 1_000_000_000) + time[1] : throw new PlatformNotSupportedException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static unsafe partial int ClockGetTime(int clock, long* time);
}
