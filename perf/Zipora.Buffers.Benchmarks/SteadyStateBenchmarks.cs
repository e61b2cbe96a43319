using System.Buffers;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>One thread: rent (or allocate), write one byte, return (or free), at each size. Every peer does the same work.</summary>
[MemoryDiagnoser]
public unsafe class SteadyStateBenchmarks : PeerPoolBenchmarks
{
    private const int Operations = 1_000;

    private MinimalNativePool _floorReused = null!;
    private MinimalNativePool _floorOwnerPerRent = null!;
    private MinimalSafeNativePool _floorKeepingThePromises = null!;
    private MinimalSafeNativePool _floorKeepingThePromisesOwnerPerRent = null!;

    [Params(64, 1024, 4096, 16384, 65536, 1048576, 4194304, 67108864)]
    public int Size { get; set; }

    [Benchmark(OperationsPerInvoke = Operations)]
    public void TieredMemoryPool() => RentWriteDispose(Tiered);

    [Benchmark(OperationsPerInvoke = Operations)]
    public void TieredMemoryPoolReuseOwners() => RentWriteDispose(TieredReuseOwners);

    /// <summary>
    /// The floor in this benchmark: <see cref="MinimalNativePool"/> reusing its blocks' own managers, as
    /// <see cref="TieredMemoryPoolOptions.ReuseOwners"/> does, called the same way as every pool here.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorReusedOwners() => RentWriteDispose(_floorReused);

    /// <summary>
    /// The floor of a pool that keeps <see cref="TieredMemoryPoolOptions.ReuseOwners"/>' promises on its fast path (a
    /// stale dispose refused, a trim handshake, the thread's stack naming its pool), and does nothing else.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorReusedOwnersKeepingThePromises() => RentWriteDispose(_floorKeepingThePromises);

    /// <summary>The default mode's floor keeping its promises: the one above with a fresh owner per rent, disposed with one atomic exchange.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorOwnerPerRentKeepingThePromises() => RentWriteDispose(_floorKeepingThePromisesOwnerPerRent);

    /// <summary>The floor of the default mode: a fresh owner per rent, disposed with one atomic exchange.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void FloorOwnerPerRent() => RentWriteDispose(_floorOwnerPerRent);

    [Benchmark(Baseline = true, OperationsPerInvoke = Operations)]
    public void MemoryPoolShared() => RentWriteDispose(MemoryPool<byte>.Shared);

    /// <summary>Kestrel's pool has 4 KB blocks only: larger sizes throw, and BenchmarkDotNet reports them as NA.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public void KestrelPool() => RentWriteDispose(Kestrel);

    [Benchmark(OperationsPerInvoke = Operations)]
    public void ArrayPoolShared()
    {
        ArrayPool<byte> pool = ArrayPool<byte>.Shared;
        for (int i = 0; i < Operations; i++)
        {
            byte[] array = pool.Rent(Size);
            array[0] = 1;
            pool.Return(array);
        }
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public void NativeMemoryAlloc()
    {
        for (int i = 0; i < Operations; i++)
        {
            byte* block = (byte*)NativeMemory.Alloc((nuint)Size);
            block[0] = 1;
            NativeMemory.Free(block);
        }
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public void MimallocAlloc()
    {
        Mimalloc.Require();
        for (int i = 0; i < Operations; i++)
        {
            byte* block = (byte*)Mimalloc.Malloc((nuint)Size);
            block[0] = 1;
            Mimalloc.Free(block);
        }
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public byte NewByteArray()
    {
        byte last = 0;
        for (int i = 0; i < Operations; i++)
        {
            byte[] array = new byte[Size];
            array[0] = 1;
            last = array[0];
        }

        return last;
    }

    protected override void OnSetup()
    {
        _floorReused = new MinimalNativePool(Size, safeOwners: false);
        _floorOwnerPerRent = new MinimalNativePool(Size, safeOwners: true);
        _floorKeepingThePromises = new MinimalSafeNativePool(Size);
        _floorKeepingThePromisesOwnerPerRent = new MinimalSafeNativePool(Size, ownerPerRent: true);
    }

    private void RentWriteDispose(MemoryPool<byte> pool)
    {
        for (int i = 0; i < Operations; i++)
        {
            IMemoryOwner<byte> owner = pool.Rent(Size);
            owner.Memory.Span[0] = 1;
            owner.Dispose();
        }
    }
}
