using System;
using System.Buffers;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>Listens to process-wide events, forces collections and sets an environment variable, so it runs alone.</summary>
[Collection(nameof(HugepageTests))]
public sealed unsafe class DiagnosticModeTests
{
    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    [InlineData(100_000)]
    [InlineData(5_000_000)]
    public void AStaleOwnerThrowsEvenAfterItsBlockIsHandedOutAgain(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.Sampled });
        IMemoryOwner<byte> first = pool.Rent(size);
        Memory<byte> stale = first.Memory;
        nint address = AddressOf(first);
        first.Dispose();

        using IMemoryOwner<byte> second = pool.Rent(size);
        Assert.Equal(address, AddressOf(second));
        second.Memory.Span.Fill(1);
        Assert.Throws<ObjectDisposedException>(() => first.Memory);
        Assert.Throws<ObjectDisposedException>(() => stale.Span[0]);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    [InlineData(100_000)]
    public void ReturnedMemoryIsPoisoned(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.Sampled });
        IMemoryOwner<byte> owner = pool.Rent(size);
        owner.Memory.Span.Fill(0x11);
        int length = owner.Memory.Length;
        nint address = AddressOf(owner);
        owner.Dispose();

        // The block is cached, still mapped: read it behind the pool's back.
        Assert.True(new ReadOnlySpan<byte>((void*)address, length).IndexOfAnyExcept((byte)0xDD) < 0);
    }

    [Fact]
    public void ADoubleDisposeIsReportedWithBothStacksAndDoesNotCorruptThePool()
    {
        using var listener = new PoolEventRecorder();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All });
        IMemoryOwner<byte> owner = pool.Rent(4096);
        DisposeOnce(owner);
        DisposeAgain(owner);

        Assert.Equal(1, pool.GetStatistics().DoubleDisposes);
        string report = Assert.Single(listener.Lines, message => message.Contains("disposed twice", StringComparison.Ordinal));
        Assert.Contains(nameof(DisposeOnce), report, StringComparison.Ordinal);
        Assert.Contains(nameof(DisposeAgain), report, StringComparison.Ordinal);
        Assert.Contains(nameof(ADoubleDisposeIsReportedWithBothStacksAndDoesNotCorruptThePool), report, StringComparison.Ordinal);

        using IMemoryOwner<byte> a = pool.Rent(4096);
        using IMemoryOwner<byte> b = pool.Rent(4096);
        Assert.False(a.Memory.Span.Overlaps(b.Memory.Span));
    }

    [Theory]
    [InlineData(1, 7)]
    [InlineData(3, 3)]
    [InlineData(128, 1)]
    public void SampledModeCapturesTheRentingAndFirstDisposingStacksOfTheFirstRentAndOneInEverySampleRateAfterIt(int sampleRate, int captured)
    {
        using var listener = new PoolEventRecorder();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.Sampled, DiagnosticSampleRate = sampleRate });
        for (int rent = 0; rent < 7; rent++)
        {
            IMemoryOwner<byte> owner = RentHere(pool);
            DisposeOnce(owner);
            DisposeAgain(owner);
        }

        Assert.Equal(7, pool.GetStatistics().DoubleDisposes);
        string[] reports = [.. listener.Lines.Where(static line => line.Contains("disposed twice", StringComparison.Ordinal))];
        Assert.Equal(7, reports.Length);
        Assert.Equal(captured, reports.Count(static report => report.Contains(nameof(RentHere), StringComparison.Ordinal)));

        // The first dispose's stack with the renting one (a walk at every dispose made Sampled as slow as All); the
        // second dispose, the misuse itself, in every report.
        Assert.Equal(captured, reports.Count(static report => report.Contains(nameof(DisposeOnce), StringComparison.Ordinal)));
        Assert.All(reports, static report => Assert.Contains(nameof(DisposeAgain), report, StringComparison.Ordinal));
    }

    [Fact]
    public void ALeakedOwnerIsReportedWithTheStackThatRentedIt()
    {
        using var listener = new PoolEventRecorder();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All });
        RentAndForget(pool);
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.Equal(1, pool.GetStatistics().LeaksDetected);
        // The LeakDetected event carries the tier, the size and the renting stack.
        string report = Assert.Single(listener.Lines, message => message.Contains(nameof(RentAndForget), StringComparison.Ordinal));
        Assert.StartsWith("medium | 8192 | ", report, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(20_000)]
    [InlineData(100_000)]
    [InlineData(3_000_000)]
    public void LargeAndHugeBuffersSitBetweenGuardPages(int size)
    {
        if (!File.Exists("/proc/self/maps"))
        {
            Skip.Because("the page protections are read from /proc/self/maps");
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.Sampled });
        using IMemoryOwner<byte> owner = pool.Rent(size);
        nint start = AddressOf(owner);
        nint end = start + owner.Memory.Length;
        Assert.Equal("---p", ProtectionAt(start - 1));
        Assert.Equal("---p", ProtectionAt(end));
        Assert.StartsWith("rw", ProtectionAt(start), StringComparison.Ordinal);
        Assert.StartsWith("rw", ProtectionAt(end - 1), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(4096, 5000)]
    [InlineData(4096, 7000)]
    [InlineData(8192, 9000)]
    [InlineData(8192, 13_000)]
    public void AOneByteOverrunFaultsAfterClassesThatAreNotWholePages(int mmapThreshold, int size)
    {
        if (!File.Exists("/proc/self/maps"))
        {
            Skip.Because("the page protections are read from /proc/self/maps");
        }

        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.Sampled, MmapThreshold = mmapThreshold });
        using IMemoryOwner<byte> owner = pool.Rent(size);
        Assert.NotEqual(0, owner.Memory.Length % Environment.SystemPageSize);
        nint end = AddressOf(owner) + owner.Memory.Length;
        Assert.Equal("---p", ProtectionAt(end));
        Assert.StartsWith("rw", ProtectionAt(end - 1), StringComparison.Ordinal);
    }

    [Fact]
    public void TheEnvironmentVariableSwitchesDiagnosticsOnWithoutCodeChanges()
    {
        Environment.SetEnvironmentVariable("ZIPORA_BUFFERS_DIAGNOSTICS", "all");
        try
        {
            using var pool = new TieredMemoryPool();
            using IMemoryOwner<byte> owner = pool.Rent(4096);
            Assert.IsType<DiagnosticOwner>(owner);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ZIPORA_BUFFERS_DIAGNOSTICS", null);
        }

        using var plain = new TieredMemoryPool();
        using IMemoryOwner<byte> pooled = plain.Rent(4096);
        Assert.IsType<BlockOwner>(pooled);
    }

    [Theory]
    [InlineData("off", DiagnosticLevel.All, false)]
    [InlineData("OFF", DiagnosticLevel.Sampled, false)]
    [InlineData("all", DiagnosticLevel.Off, true)]
    [InlineData("sampled", DiagnosticLevel.Off, true)]
    public void TheEnvironmentVariableWinsOverTheOption(string variable, DiagnosticLevel option, bool diagnostic)
    {
        Environment.SetEnvironmentVariable("ZIPORA_BUFFERS_DIAGNOSTICS", variable);
        try
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = option });
            using IMemoryOwner<byte> owner = pool.Rent(4096);
            Assert.Equal(diagnostic, owner is DiagnosticOwner);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ZIPORA_BUFFERS_DIAGNOSTICS", null);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void ASampleRateBelowOneIsRejected(int rate)
    {
        var error = Assert.Throws<ArgumentException>(() => new TieredMemoryPool(new TieredMemoryPoolOptions { DiagnosticSampleRate = rate }));
        Assert.Equal(nameof(TieredMemoryPoolOptions.DiagnosticSampleRate), error.ParamName);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DisposeOnce(IMemoryOwner<byte> owner) => owner.Dispose();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DisposeAgain(IMemoryOwner<byte> owner) => owner.Dispose();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static IMemoryOwner<byte> RentHere(TieredMemoryPool pool) => pool.Rent(4096);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentAndForget(TieredMemoryPool pool) => pool.Rent(8192).Memory.Span.Fill(1);

    private static nint AddressOf(IMemoryOwner<byte> owner)
    {
        using MemoryHandle handle = owner.Memory.Pin();
        return (nint)handle.Pointer;
    }

    private static string ProtectionAt(nint address)
    {
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] range = fields[0].Split('-');
            long from = long.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            long to = long.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (address >= from && address < to)
            {
                return fields[1];
            }
        }

        return "unmapped";
    }
}
