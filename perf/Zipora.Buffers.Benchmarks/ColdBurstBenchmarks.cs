using System.Buffers;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The seed's bursts on a fresh pool each time: every buffer is a miss, so this shows what mapping and first-touch
/// page faults cost, against the peers that always start cold (fresh arrays, malloc of large blocks).
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 15, invocationCount: 1)]
public unsafe class ColdBurstBenchmarks
{
    private const int PageSize = 4096;
    private TieredMemoryPool _fresh = null!;
    private IMemoryOwner<byte>[] _owners = null!;
    private nint[] _blocks = null!;

    [ParamsSource(nameof(Bursts))]
    public Burst Pattern { get; set; }

    public static Burst[] Bursts => BurstBenchmarks.Bursts;

    [GlobalSetup]
    public void Setup()
    {
        _owners = new IMemoryOwner<byte>[Pattern.Count];
        _blocks = new nint[Pattern.Count];
    }

    [IterationSetup(Target = nameof(TieredMemoryPoolCold))]
    public void CreatePool() => _fresh = Peers.CreateTieredPool();

    [IterationCleanup(Target = nameof(TieredMemoryPoolCold))]
    public void DisposePool() => _fresh.Dispose();

    [Benchmark]
    public void TieredMemoryPoolCold()
    {
        for (int i = 0; i < _owners.Length; i++)
        {
            _owners[i] = _fresh.Rent(Pattern.Size);
            System.Span<byte> span = _owners[i].Memory.Span;
            for (int offset = 0; offset < Pattern.Size; offset += PageSize)
            {
                span[offset] = 1;
            }
        }

        foreach (IMemoryOwner<byte> owner in _owners)
        {
            owner.Dispose();
        }
    }

    [Benchmark(Baseline = true)]
    public void NewByteArray()
    {
        for (int i = 0; i < _owners.Length; i++)
        {
            byte[] array = new byte[Pattern.Size];
            for (int offset = 0; offset < array.Length; offset += PageSize)
            {
                array[offset] = 1;
            }
        }
    }

    [Benchmark]
    public void NativeMemoryAlloc()
    {
        for (int i = 0; i < _blocks.Length; i++)
        {
            byte* block = (byte*)NativeMemory.Alloc((nuint)Pattern.Size);
            for (int offset = 0; offset < Pattern.Size; offset += PageSize)
            {
                block[offset] = 1;
            }

            _blocks[i] = (nint)block;
        }

        foreach (nint block in _blocks)
        {
            NativeMemory.Free((void*)block);
        }
    }
}
