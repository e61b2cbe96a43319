using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Threading;
using Zipora.Buffers;

// The child process of the container tests: run inside a memory cgroup, it plays one scenario and prints one
// "RESULT key=value ..." line for the test to check. Scenarios:
//   defaults  - a pool with default options: the memory limit it found and the caps it derived.
//   pressure  - a pool holding 256 MB idle (caps set high, so only the pressure check can save the process) while the
//               managed heap grows by 320 MB: in a 512 MB cgroup, the process survives only if the pool gives its
//               idle memory back before the kernel's OOM killer acts.
//   pinned    - as pressure, with the pool in pinned-array mode (Kestrel's) and native memory growing by 320 MB (the
//               GC sees no reason to collect): its pages let go of go back to the GC, which must hand them to the OS.
//   disposed  - as pinned, with the pool disposed before native memory grows: a disposed pool is no longer trimmed.
//   arrays    - as pinned, with a TieredArrayPool holding 256 MB of idle 64 KB arrays (on the GC's pinned heap).
//   late      - as pinned, on mapped pages, in a cgroup with no limit when the pool is made: the probe then sets the
//               limit itself (root), to 512 MB, in the file given as the second argument (docker update --memory).
//   sustained - memory stays short (native memory holds 90% of the limit, named by the cgroup's charge file given
//               as the second argument) while a quiet pool holds 200,000 free small blocks, each pinned by a live
//               neighbour: the process's CPU time over 5 s shows whether the pool walks them again and again.
//   kestrel   - a Kestrel server on AddTieredMemoryPool() after a burst of large uploads and downloads, while native
//               memory grows toward the limit; then it serves again (see KestrelBurst). Arguments: the cgroup's
//               limit file, the mode, the seconds of quiet after the burst.
//   exit      - the process ends while the pools are busy (see ExitStorm), as the second argument says: exit, return, throw.
const int Megabyte = 1024 * 1024;
string scenario = args.Length > 0 ? args[0] : "defaults";
if (scenario == "defaults")
{
    using var pool = new TieredMemoryPool();
    TieredMemoryPoolStatistics statistics = pool.GetStatistics();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT limit={statistics.MemoryLimit} retainedCap={statistics.RetainedBytesCap}"));
    return 0;
}

if (scenario == "pinned")
{
    return PinnedUnderNativeGrowth();
}

if (scenario == "disposed")
{
    return DisposedPinnedUnderNativeGrowth();
}

if (scenario == "arrays")
{
    return ArraysUnderNativeGrowth();
}

if (scenario == "late")
{
    return LimitSetLate(args[1]);
}

if (scenario == "sustained")
{
    return Sustained(args[1], args.Length > 2 ? double.Parse(args[2], CultureInfo.InvariantCulture) : 0.9);
}

if (scenario == "kestrel")
{
    return await KestrelBurst.RunAsync(args[1], args[2], TimeSpan.FromSeconds(int.Parse(args[3], CultureInfo.InvariantCulture)));
}

if (scenario == "exit")
{
    return Zipora.Buffers.ContainerProbe.ExitStorm.EndTheProcess(args[1]);
}

if (scenario != "pressure")
{
    Console.Error.WriteLine($"unknown scenario {scenario}");
    return 2;
}

// 256 MB of 16 KB medium blocks, written (so resident) and returned: idle in the pool's slabs and caches.
using TieredMemoryPool held = PoolHolding256MegabytesIdle(usePinnedArrays: false);
long idleBefore = held.GetStatistics().BytesRetained;

// The managed heap grows by 320 MB, touched, at about 200 MB/s.
var heap = new List<byte[]>();
for (int i = 0; i < 320; i++)
{
    byte[] chunk = new byte[Megabyte];
    chunk.AsSpan().Fill(2);
    heap.Add(chunk);
    if (i % 10 == 0)
    {
        Thread.Sleep(50);
    }
}

TieredMemoryPoolStatistics after = held.GetStatistics();
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"RESULT idleBefore={idleBefore} retainedAfter={after.BytesRetained} pressureTrims={after.PressureTrims} heap={heap.Count} rss={ResidentBytes()}"));
return 0;

static int PinnedUnderNativeGrowth()
{
    // 256 MB of 16 KB medium blocks on pinned arrays, written and returned: idle in the pool.
    using TieredMemoryPool pool = PoolHolding256MegabytesIdle(usePinnedArrays: true);
    long idleBefore = pool.GetStatistics().BytesRetained;

    int[] native = GrowNative(320);

    TieredMemoryPoolStatistics after = pool.GetStatistics();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"RESULT idleBefore={idleBefore} retainedAfter={after.BytesRetained} pressureTrims={after.PressureTrims} native={native.Length} rss={ResidentBytes()}"));
    return 0;
}

static int DisposedPinnedUnderNativeGrowth()
{
    TieredMemoryPool pool = PoolHolding256MegabytesIdle(usePinnedArrays: true);
    long idleBefore = pool.GetStatistics().BytesRetained;
    pool.Dispose();
    long awaitingAfterDispose = pool.GetStatistics().BytesAwaitingRelease;

    int[] native = GrowNative(320);

    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"RESULT idleBefore={idleBefore} awaitingAfterDispose={awaitingAfterDispose} native={native.Length} rss={ResidentBytes()}"));
    return 0;
}

static int LimitSetLate(string limitFile)
{
    using TieredMemoryPool pool = PoolHolding256MegabytesIdle(usePinnedArrays: false);
    long idleBefore = pool.GetStatistics().BytesRetained;
    long limitAtStart = pool.GetStatistics().MemoryLimit;
    File.WriteAllText(limitFile, (512 * Megabyte).ToString(CultureInfo.InvariantCulture));
    int[] native = GrowNative(320);
    TieredMemoryPoolStatistics after = pool.GetStatistics();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"RESULT limitAtStart={limitAtStart} idleBefore={idleBefore} retainedAfter={after.BytesRetained} pressureTrims={after.PressureTrims} native={native.Length}"));
    return 0;
}

static int ArraysUnderNativeGrowth()
{
    var pool = new TieredArrayPool(new TieredArrayPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10) });
    var arrays = new List<byte[]>();
    for (int i = 0; i < 256 * Megabyte / (64 * 1024); i++)
    {
        byte[] array = pool.Rent(64 * 1024);
        array.AsSpan().Fill(1);
        arrays.Add(array);
    }

    arrays.ForEach(array => pool.Return(array));
    arrays.Clear();
    long idleBefore = pool.GetStatistics().BytesRetained;
    int[] native = GrowNative(320);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"RESULT idleBefore={idleBefore} retainedAfter={pool.GetStatistics().BytesRetained} native={native.Length} rss={ResidentBytes()}"));
    return 0;
}

// A pool that holds 256 MB of 16 KB blocks idle, written (so resident) and returned, and keeps them ten minutes: only
// its memory-limit handling can give them back within the probe's run.
static TieredMemoryPool PoolHolding256MegabytesIdle(bool usePinnedArrays)
{
    var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
    {
        UsePinnedArrays = usePinnedArrays,
        MaxRetainedBytes = 4L * 1024 * Megabyte,
        IdleReleaseDelay = TimeSpan.FromMinutes(10),
        ThreadCacheMaxBytes = 64 * Megabyte,
        ThreadCacheMaxBuffers = 4096,
    });
    var owners = new List<IMemoryOwner<byte>>();
    for (int i = 0; i < 256 * Megabyte / (16 * 1024); i++)
    {
        IMemoryOwner<byte> owner = pool.Rent(16 * 1024);
        owner.Memory.Span.Fill(1);
        owners.Add(owner);
    }

    owners.ForEach(owner => owner.Dispose());
    return pool;
}

// Native memory grows by this many megabytes, written, at about 200 MB/s; nothing here allocates on the managed heap.
static int[] GrowNative(int megabytes)
{
    byte[] pattern = new byte[Megabyte];
    pattern.AsSpan().Fill(2);
    var native = new int[megabytes];
    for (int i = 0; i < native.Length; i++)
    {
        IntPtr chunk = System.Runtime.InteropServices.Marshal.AllocHGlobal(Megabyte);
        System.Runtime.InteropServices.Marshal.Copy(pattern, 0, chunk, Megabyte);
        native[i] = 1;
        if (i % 10 == 0)
        {
            Thread.Sleep(50);
        }
    }

    return native;
}

static int Sustained(string chargeFile, double share)
{
    using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { IdleReleaseDelay = TimeSpan.FromMinutes(10), EnableHugepages = false });

    // Every other 16-byte block free: no page of the small tier is free, so a trim gives nothing back, but walks
    // every free block to find that out.
    var owners = new List<IMemoryOwner<byte>>();
    for (int i = 0; i < 400_000; i++)
    {
        owners.Add(pool.Rent(16));
    }

    for (int i = 0; i < owners.Count; i += 2)
    {
        owners[i].Dispose();
    }

    // Native memory outside the pool grows, written, until the cgroup is charged 90% of its limit, and stays there
    // (not the managed heap: in a container the GC's own limit is 75% of the cgroup's).
    long limit = pool.GetStatistics().MemoryLimit;
    byte[] pattern = new byte[Megabyte];
    pattern.AsSpan().Fill(3);
    var heap = new List<IntPtr>();
    while (long.Parse(File.ReadAllText(chargeFile).Trim(), CultureInfo.InvariantCulture) < limit * share)
    {
        IntPtr chunk = System.Runtime.InteropServices.Marshal.AllocHGlobal(Megabyte);
        System.Runtime.InteropServices.Marshal.Copy(pattern, 0, chunk, Megabyte);
        heap.Add(chunk);
    }

    // The first pressure trim is due within the watcher's period; what follows is the quiet pool under lasting pressure.
    var waited = System.Diagnostics.Stopwatch.StartNew();
    while (pool.GetStatistics().PressureTrims == 0 && waited.Elapsed < TimeSpan.FromSeconds(5))
    {
        Thread.Sleep(10);
    }

    Thread.Sleep(500);
    long trimsBefore = pool.GetStatistics().PressureTrims;
    TimeSpan cpuBefore = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
    Thread.Sleep(5_000);
    TimeSpan cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
    TieredMemoryPoolStatistics after = pool.GetStatistics();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"RESULT trimsBefore={trimsBefore} trimsDuring={after.PressureTrims - trimsBefore} cpuMs={(long)cpu.TotalMilliseconds} heap={heap.Count} live={owners.Count / 2}"));
    GC.KeepAlive(owners);
    return 0;
}

static long ResidentBytes()
{
    foreach (string line in File.ReadLines("/proc/self/status"))
    {
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
        {
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
    }

    return 0;
}
