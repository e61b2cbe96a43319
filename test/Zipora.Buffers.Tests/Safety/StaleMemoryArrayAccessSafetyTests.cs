using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// On pinned arrays (Kestrel's mode) a <see cref="Memory{T}"/> kept from an owner reaches the block's array through
/// <see cref="MemoryMarshal.TryGetArray{T}(ReadOnlyMemory{T}, out ArraySegment{T})"/>, a path that takes neither
/// <c>Memory.Span</c> nor <c>owner.Memory</c>. README, Reliability: "The block's own manager never escapes, so nothing a
/// caller keeps can reach the block once the owner is disposed", and a revived owner "throws and its dispose is
/// ignored". So a kept <c>Memory</c> must answer <see langword="false"/> once its owner is disposed, and also when a
/// user's finalizer revives it after the pool reclaimed its block as leaked and handed the array to someone else. In
/// diagnostic mode, too: "a stale owner, or a Memory kept from it, throws even after the block was handed to someone
/// else", and a pool for Kestrel may be switched to it by the environment variable.
/// </summary>
/// <remarks>
/// <see cref="RevivedAfterReclaimSafetyTests"/> checks <c>owner.Memory</c> and the dispose of a revived owner, never
/// <c>TryGetArray</c>: with the owner's generation check taken out of its <c>TryGetArray</c>, every test passed while
/// the revived <c>Memory</c> handed out the new renter's array; so did a stale one in diagnostic mode with the
/// diagnostic owner's liveness check taken out of its <c>TryGetArray</c>. Forces full garbage collections, so it runs alone.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class StaleMemoryArrayAccessSafetyTests
{
    public static TheoryData<int> Sizes => [.. SafetyCases.OneSizePerTier];

    public static TheoryData<int, DiagnosticLevel> SizesWithAndWithoutDiagnostics
    {
        get
        {
            var data = new TheoryData<int, DiagnosticLevel>();
            foreach (int size in SafetyCases.OneSizePerTier)
            {
                data.Add(size, DiagnosticLevel.Off);
                data.Add(size, DiagnosticLevel.All);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(SizesWithAndWithoutDiagnostics))]
    public void AMemoryKeptPastItsOwnersDisposeGetsNoArrayEvenOnceTheArrayIsRentedAgain(int size, DiagnosticLevel diagnostics)
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, new FakeTimeProvider());
        options.Diagnostics = diagnostics;
        using var pool = new TieredMemoryPool(options);
        IMemoryOwner<byte> owner = pool.Rent(size);
        Memory<byte> kept = owner.Memory;
        Assert.True(MemoryMarshal.TryGetArray<byte>(kept, out ArraySegment<byte> before), "a live pinned block has an array");
        owner.Dispose();
        Assert.False(MemoryMarshal.TryGetArray<byte>(kept, out _), "a Memory kept past its owner's dispose still reached the array");

        using IMemoryOwner<byte> next = pool.Rent(size);
        Assert.True(MemoryMarshal.TryGetArray<byte>(next.Memory, out ArraySegment<byte> again));
        Assert.Same(before.Array, again.Array);
        Assert.False(MemoryMarshal.TryGetArray<byte>(kept, out _), "a stale Memory reached the next renter's array");
    }

    /// <summary>
    /// With <c>ReuseOwners</c> the block is its own owner, and the README's table promises <c>ObjectDisposedException</c>
    /// "until the block is rented again" (then it aliases the new renter, the mode's documented price): until then the
    /// array is nobody's to reach. With the block's own liveness check taken out of its <c>TryGetArraySegment</c>, a
    /// returned block's array was still handed to a kept <c>Memory</c> and every test passed.
    /// </summary>
    [Theory]
    [MemberData(nameof(Sizes))]
    public void WithReusedOwnersAMemoryKeptPastItsDisposeGetsNoArrayUntilTheBlockIsRentedAgain(int size)
    {
        TieredMemoryPoolOptions options = SafetyCases.Options(OwnerMode.PinnedArrays, new FakeTimeProvider());
        options.ReuseOwners = true;
        using var pool = new TieredMemoryPool(options);
        IMemoryOwner<byte> owner = pool.Rent(size);
        Memory<byte> kept = owner.Memory;
        Assert.True(MemoryMarshal.TryGetArray<byte>(kept, out _), "a live pinned block has an array");
        owner.Dispose();

        Assert.Throws<ObjectDisposedException>(() => kept.Span.Length);
        Assert.False(MemoryMarshal.TryGetArray<byte>(kept, out _), "a Memory kept past its dispose reached the returned block's array");
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void AMemoryRevivedAfterItsBlockWasReclaimedGetsNoArrayOfTheNextRenter(int size)
    {
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(OwnerMode.PinnedArrays, time);
        int id = RevivalAfterReclaim.RentAndDrop(pool, size, static owner => owner.Memory, out OwnerRange block);
        Memory<byte> revived = RevivalAfterReclaim.ReviveOnceReclaimed<Memory<byte>>(pool, id);
        var renters = new List<IMemoryOwner<byte>>();
        _ = RevivalAfterReclaim.RentUntilHandedOutAgain(pool, time, size, block, renters);
        Assert.Throws<ObjectDisposedException>(() => revived.Span.Length);
        Assert.False(
            MemoryMarshal.TryGetArray<byte>(revived, out ArraySegment<byte> reached),
            $"the revived Memory reached an array of {reached.Count} bytes: the one the pool gave the next renter of {block}");
        renters.ForEach(static renter => renter.Dispose());
    }
}
