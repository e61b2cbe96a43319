using System;
using System.Buffers;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// Random reads and a dependent pointer chase over 1 GB: a buffer from the huge tier (2 MB aligned, advised for
/// transparent hugepages or on reserved hugepages) against the same size from NativeMemory.Alloc on 4 KB pages.
/// The achieved hugepage coverage is printed in the setup (AnonHugePages and HugePages_Free deltas).
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 8)]
public unsafe class HugepageBenchmarks
{
    private const int Bytes = 1 << 30;
    private const int Slot = 64;
    private const int Steps = 4_000_000;
    private TieredMemoryPool _pool = null!;
    private IMemoryOwner<byte> _huge = null!;
    private byte* _hugeBase;
    private byte* _small;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new TieredMemoryPool(new TieredMemoryPoolOptions { HugeRegionCacheMaxBytes = 2L << 30 });
        HugePageInfo before = HugePageInfo.Read();
        _huge = _pool.Rent(Bytes);
        using (MemoryHandle handle = _huge.Memory.Pin())
        {
            _hugeBase = (byte*)handle.Pointer;
        }

        _small = (byte*)NativeMemory.Alloc(Bytes);
        BuildChase(_hugeBase);
        BuildChase(_small);
        HugePageInfo after = HugePageInfo.Read();
        Console.WriteLine($"// hugepage coverage of the huge-tier buffer: AnonHugePages +{(after.AnonHugePageBytes - before.AnonHugePageBytes) >> 20} MB, " +
            $"reserved 2 MB pages used {before.Free2MBPages - after.Free2MBPages}, pool HugepageBytes {_pool.GetStatistics().HugepageBytes >> 20} MB of {Bytes >> 20} MB");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _huge.Dispose();
        _pool.Dispose();
        NativeMemory.Free(_small);
    }

    [Benchmark]
    public long PointerChaseHugeTier() => Chase(_hugeBase);

    [Benchmark(Baseline = true)]
    public long PointerChaseBasePages() => Chase(_small);

    [Benchmark]
    public long RandomReadsHugeTier() => RandomReads(_hugeBase);

    [Benchmark]
    public long RandomReadsBasePages() => RandomReads(_small);

    /// <summary>Links every 64-byte slot into one random cycle (Sattolo's shuffle), so each load depends on the last.</summary>
    private static void BuildChase(byte* memory)
    {
        int slots = Bytes / Slot;
        int[] order = new int[slots];
        for (int i = 0; i < slots; i++)
        {
            order[i] = i;
        }

        var random = new Random(7);
        for (int i = slots - 1; i > 0; i--)
        {
            int j = random.Next(i);
            (order[i], order[j]) = (order[j], order[i]);
        }

        for (int i = 0; i < slots; i++)
        {
            *(long*)(memory + ((long)order[i] * Slot)) = (long)order[(i + 1) % slots] * Slot;
        }
    }

    private static long Chase(byte* memory)
    {
        long offset = 0;
        for (int i = 0; i < Steps; i++)
        {
            offset = *(long*)(memory + offset);
        }

        return offset;
    }

    private static long RandomReads(byte* memory)
    {
        ulong state = 0x2545F4914F6CDD1DUL;
        long sum = 0;
        for (int i = 0; i < Steps; i++)
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            sum += memory[(long)(state % Bytes)];
        }

        return sum;
    }
}
