using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// An owner leaked while a <see cref="MemoryHandle"/> from its <c>Pin()</c> lives (an I/O in flight): the block is
/// still written through the handle, so it must not be reclaimed as a leak and handed to another renter until the
/// handle is let go of; then it is.
/// </summary>
public sealed class LeakedOwnerLiveHandleTests
{
    private const int Size = 100_000;

    public static TheoryData<bool, DiagnosticLevel, bool> Owners()
    {
        var data = new TheoryData<bool, DiagnosticLevel, bool>();
        foreach (bool pinned in new[] { false, true })
        {
            data.Add(false, DiagnosticLevel.Off, pinned);
            data.Add(true, DiagnosticLevel.Off, pinned);
            data.Add(false, DiagnosticLevel.All, pinned);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Owners))]
    public unsafe void ALeakedOwnersBlockIsNotReclaimedWhileItsHandleLivesAndIsOnceItGoes(bool reuseOwners, DiagnosticLevel diagnostics, bool pinnedArrays)
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            UsePinnedArrays = pinnedArrays,
            ReuseOwners = reuseOwners,
            Diagnostics = diagnostics,
            TimeProvider = time,
        });
        var handle = new StrongBox<MemoryHandle>();
        RentPinAndLeak(pool, handle);
        for (int i = 0; i < 4; i++)
        {
            Collect();
            time.Advance(TimeSpan.FromSeconds(11));
        }

        Assert.Equal(0, pool.GetStatistics().LeaksReclaimed);
        using (IMemoryOwner<byte> next = pool.Rent(Size))
        {
            next.Memory.Span.Fill(1);
            var stale = new Span<byte>(handle.Value.Pointer, Size);
            stale.Fill(2);
            Assert.True(next.Memory.Span.IndexOfAnyExcept((byte)1) < 0, "the leaked block went to a new renter under a live handle");
        }

        handle.Value.Dispose();
        SeeTheQuarantineThrough(time);

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.LeaksReclaimed);
        Assert.Equal(0, statistics.BytesInUse);
    }

    [Fact]
    public void ALeakedOwnerWithoutAHandleIsReclaimedAndCountsNothingInUseOnceItsQuarantineIsOver()
    {
        var time = new FakeTimeProvider();
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { TimeProvider = time });
        Leak(pool);
        SeeTheQuarantineThrough(time);

        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        Assert.Equal(1, statistics.LeaksReclaimed);
        Assert.Equal(0, statistics.BytesInUse);
    }

    /// <summary>The quarantine holds a reclaimed block one delay, counted in use: eight ticks of the clock see it through.</summary>
    private static void SeeTheQuarantineThrough(FakeTimeProvider time)
    {
        for (int i = 0; i < 8; i++)
        {
            Collect();
            time.Advance(TimeSpan.FromSeconds(11));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Leak(TieredMemoryPool pool) => pool.Rent(Size).Memory.Span.Fill(3);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RentPinAndLeak(TieredMemoryPool pool, StrongBox<MemoryHandle> handle)
    {
        IMemoryOwner<byte> owner = pool.Rent(Size);
        handle.Value = owner.Memory.Pin();
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
