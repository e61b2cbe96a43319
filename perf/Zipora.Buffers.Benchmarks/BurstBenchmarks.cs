using System.Buffers;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The seed's bursts: rent Count buffers of Size, touching every page of each (the first-touch cost is part of the
/// work), then return them all. Warm: the pools have served the burst before. Reported per burst.
/// </summary>
[MemoryDiagnoser]
public unsafe class BurstBenchmarks : PeerPoolBenchmarks
{
    private const int PageSize = 4096;
    private IMemoryOwner<byte>[] _owners = null!;
    private byte[][] _arrays = null!;
    private nint[] _blocks = null!;
    private MinimalNativePool _floor = null!;

    [ParamsSource(nameof(Bursts))]
    public Burst Pattern { get; set; }

    public static Burst[] Bursts => [new(100, 1024), new(100, 16384), new(10, 1048576), new(10, 4194304)];

    protected override void OnSetup()
    {
        _owners = new IMemoryOwner<byte>[Pattern.Count];
        _arrays = new byte[Pattern.Count][];
        _blocks = new nint[Pattern.Count];
        _floor = new MinimalNativePool(Pattern.Size, safeOwners: false);
    }

    [Benchmark]
    public void TieredMemoryPool() => BurstFrom(Tiered);

    [Benchmark]
    public void TieredMemoryPoolReuseOwners() => BurstFrom(TieredReuseOwners);

    [Benchmark(Baseline = true)]
    public void MemoryPoolShared() => BurstFrom(MemoryPool<byte>.Shared);

    [Benchmark]
    public void KestrelPool() => BurstFrom(Kestrel);

    [Benchmark]
    public void ArrayPoolShared()
    {
        for (int i = 0; i < _arrays.Length; i++)
        {
            _arrays[i] = ArrayPool<byte>.Shared.Rent(Pattern.Size);
            TouchPages(_arrays[i]);
        }

        foreach (byte[] array in _arrays)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    [Benchmark]
    public void NativeMemoryAlloc()
    {
        for (int i = 0; i < _blocks.Length; i++)
        {
            _blocks[i] = (nint)NativeMemory.Alloc((nuint)Pattern.Size);
            TouchPages((byte*)_blocks[i], Pattern.Size);
        }

        foreach (nint block in _blocks)
        {
            NativeMemory.Free((void*)block);
        }
    }

    [Benchmark]
    public void MimallocAlloc()
    {
        Mimalloc.Require();
        for (int i = 0; i < _blocks.Length; i++)
        {
            _blocks[i] = (nint)Mimalloc.Malloc((nuint)Pattern.Size);
            TouchPages((byte*)_blocks[i], Pattern.Size);
        }

        foreach (nint block in _blocks)
        {
            Mimalloc.Free((void*)block);
        }
    }

    /// <summary>
    /// Floor experiment: the burst from the least a pool of <see cref="IMemoryOwner{T}"/> over native memory can do (a
    /// thread-static stack of blocks handing out their own managers; see <see cref="MinimalNativePool"/>). What it costs
    /// above mimalloc is what the owner interface itself costs: a virtual GetSpan per write, a dispose per buffer.
    /// </summary>
    [Benchmark]
    public void FloorReusedOwners() => BurstFrom(_floor);

    [Benchmark]
    public void NewByteArray()
    {
        for (int i = 0; i < _arrays.Length; i++)
        {
            _arrays[i] = new byte[Pattern.Size];
            TouchPages(_arrays[i]);
        }
    }

    private void BurstFrom(MemoryPool<byte> pool)
    {
        for (int i = 0; i < _owners.Length; i++)
        {
            _owners[i] = pool.Rent(Pattern.Size);
            TouchPages(_owners[i].Memory.Span[..Pattern.Size]);
        }

        foreach (IMemoryOwner<byte> owner in _owners)
        {
            owner.Dispose();
        }
    }

    private static void TouchPages(System.Span<byte> buffer)
    {
        for (int offset = 0; offset < buffer.Length; offset += PageSize)
        {
            buffer[offset] = 1;
        }
    }

    private static void TouchPages(byte* block, int size)
    {
        for (int offset = 0; offset < size; offset += PageSize)
        {
            block[offset] = 1;
        }
    }
}
