using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Service providers on a native pool built and disposed in a loop, each with tens of megabytes of buffers still out
/// at its dispose and returned after it (as Kestrel's are at shutdown): measured from outside, through the process's
/// writable mappings and resident memory, every cycle's memory must go back to the OS once its delay is over.
/// </summary>
/// <remarks>Forces full garbage collections and measures the process's memory, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class ProviderCyclesGiveNativeMemoryBackTests
{
    private const int Cycles = 6;
    private const int BuffersPerTier = 8;
    private static readonly int[] s_sizes = [700, 12_000, 1024 * 1024, 4 * 1024 * 1024];
    private static readonly long s_bytesPerCycle = BuffersPerTier * (700L + 12_000 + (1024 * 1024) + (4 * 1024 * 1024));
    private static readonly TimeSpan s_delay = TimeSpan.FromMilliseconds(100);

    /// <summary>What happens to the buffers out at the provider's dispose.</summary>
    public enum Fate
    {
        /// <summary>Disposed after the provider, as Kestrel's in-flight buffers are.</summary>
        ReturnedLate,

        /// <summary>Never disposed: the pool reclaims them once they are collected, after their quarantine.</summary>
        Leaked,

        /// <summary>Held by segmented writers on thread-pool threads (each thread's spare tracker and segment kept for the pool), disposed late.</summary>
        InSegmentedWriters,
    }

    [Theory]
    [InlineData(Fate.ReturnedLate)]
    [InlineData(Fate.Leaked)]
    [InlineData(Fate.InSegmentedWriters)]
    public void EveryCyclesNativeMemoryGoesBackToTheOsOnceItsDelayIsOver(Fate fate)
    {
        Assert.SkipUnless(ProcessMappings.CanRead && ProcessMemory.CanRead, "reads /proc/self");
        Settle();
        long writableBefore = ProcessMappings.WritableBytes();
        long residentBefore = ProcessMemory.SettledResidentBytes();

        var pools = new List<WeakReference>();
        var ranges = new Dictionary<nint, int>();
        for (int cycle = 0; cycle < Cycles; cycle++)
        {
            pools.Add(CycleOnce(fate, ranges));
        }

        long leakedWritable = ProcessMappings.WritableBytes() - writableBefore;
        var clock = Stopwatch.StartNew();
        while ((pools.Exists(static pool => pool.IsAlive) || ProcessMappings.WritableBytes() - writableBefore > s_bytesPerCycle / 2) && clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            Settle();
            Thread.Sleep(s_delay);
        }

        long writableAfter = ProcessMappings.WritableBytes() - writableBefore;
        long residentAfter = ProcessMemory.ResidentBytes() - residentBefore;
        TestContext.Current.SendDiagnosticMessage(
            $"{fate}: {Cycles} cycles of {s_bytesPerCycle >> 20} MB out at dispose: writable +{leakedWritable >> 20} MB right after, " +
            $"+{writableAfter >> 20} MB and resident +{residentAfter >> 20} MB after {clock.ElapsedMilliseconds} ms, pools alive {pools.FindAll(static pool => pool.IsAlive).Count}, " +
            $"{StillMapped(ranges)} of {ranges.Count} buffer ranges still mapped");

        Assert.All(pools, static pool => Assert.False(pool.IsAlive, "a disposed provider's pool is still reachable"));

        // The buffers' own ranges: none stays mapped (a range reused by the runtime since would be one of a few).
        Assert.InRange(StillMapped(ranges), 0, ranges.Count / 10);

        // A cycle's worth: a leak keeps every cycle's 40 MB mapped and resident, where the runtime's own heaps and threads
        // moved the process's figures by up to 15 MB, measured.
        Assert.InRange(writableAfter, long.MinValue, s_bytesPerCycle);
        Assert.InRange(residentAfter, long.MinValue, s_bytesPerCycle);
    }

    /// <summary>Builds a provider, rents every tier's sizes through its factory and touches them, disposes it, then returns them.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference CycleOnce(Fate fate, Dictionary<nint, int> ranges)
    {
        ServiceProvider provider = new ServiceCollection()
            .AddTieredMemoryPool(static options =>
            {
                options.UsePinnedArrays = false;
                options.IdleReleaseDelay = s_delay;
            })
            .BuildServiceProvider();
        var pool = new WeakReference(provider.GetRequiredService<TieredMemoryPool>());
        if (fate == Fate.InSegmentedWriters)
        {
            WriteSegmentedThenDispose(provider, ranges);
            return pool;
        }

        MemoryPool<byte> view = provider.GetRequiredService<IMemoryPoolFactory<byte>>().Create(new MemoryPoolOptions { Owner = "kestrel" });
        var rented = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizes)
        {
            for (int i = 0; i < BuffersPerTier; i++)
            {
                IMemoryOwner<byte> owner = view.Rent(size);
                owner.Memory.Span.Fill(0x5a);
                rented.Add(owner);
                ranges[AddressOf(owner.Memory)] = owner.Memory.Length;
            }
        }

        provider.Dispose();
        if (fate == Fate.ReturnedLate)
        {
            rented.ForEach(static owner => owner.Dispose());
        }

        return pool;
    }

    /// <summary>Writers on many threads, half disposed before the provider (each thread keeps its spares for the pool), half after.</summary>
    private static void WriteSegmentedThenDispose(ServiceProvider provider, Dictionary<nint, int> ranges)
    {
        var options = new SegmentedBufferOptions { Pool = provider.GetRequiredService<TieredMemoryPool>() };
        var open = new SegmentedBufferWriter[16];
        byte[] chunk = new byte[3000];
        _ = Parallel.For(0, 32, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var writer = new SegmentedBufferWriter(options);
            for (long written = 0; written < s_bytesPerCycle / 32; written += chunk.Length)
            {
                writer.Write(chunk);
            }

            if (i % 2 == 0)
            {
                writer.Dispose();
            }
            else
            {
                open[i / 2] = writer;
            }
        });
        foreach (SegmentedBufferWriter writer in open)
        {
            foreach (ReadOnlyMemory<byte> segment in writer.GetReadOnlySequence())
            {
                ranges[AddressOf(segment)] = segment.Length;
            }
        }

        provider.Dispose();
        _ = Parallel.ForEach(open, static writer => writer.Dispose());
    }

    private static unsafe nint AddressOf(ReadOnlyMemory<byte> memory)
    {
        using MemoryHandle pin = memory.Pin();
        return (nint)pin.Pointer;
    }

    private static int StillMapped(Dictionary<nint, int> ranges)
    {
        int mapped = 0;
        foreach ((nint address, int length) in ranges)
        {
            mapped += ProcessMappings.IsMapped(address, length) ? 1 : 0;
        }

        return mapped;
    }

    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
