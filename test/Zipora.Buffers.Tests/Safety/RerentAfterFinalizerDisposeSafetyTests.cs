using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A user's finalizer disposes the owner it holds (sloppy but common), and the block is rented again before the
/// block's own finalizer, queued in the same collection, has run. The block's finalizer then finds a live block and
/// reclaims it as a leak, out from under the new renter, who did nothing wrong.
/// </summary>
/// <remarks>
/// The new rent happens in the user's finalizer itself, so it is deterministic that it comes before the block's
/// finalizer whenever the runtime runs the wrapper's finalizer first; in a server any thread renting the size in
/// that window does the same. Forces full collections, so it runs alone.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class RerentAfterFinalizerDisposeSafetyTests
{
    private const int Pairs = 8;
    private const int Probes = 64;
    private static readonly TimeSpan s_pastTheQuarantine = TimeSpan.FromSeconds(2.5);
    private static readonly ConcurrentQueue<(IMemoryOwner<byte> Owner, OwnerRange Range)> s_rentedInFinalizers = new();

    [Theory]
    [MemberData(nameof(SafetyCases.TiersInFreshOwnerModes), MemberType = typeof(SafetyCases))]
    public void AnOwnerRentedAfterAFinalizerDisposedTheBlocksLastOwnerIsNeverReclaimedFromUnderItsRenter(int size, OwnerMode mode)
    {
        s_rentedInFinalizers.Clear();
        var time = new FakeTimeProvider();
        using TieredMemoryPool pool = SafetyCases.Pool(mode, time);
        DropWrappersThatDisposeAndRentAgain(pool, size, Pairs);
        SafetyCases.CollectEverything();

        var innocent = new List<(IMemoryOwner<byte> Owner, OwnerRange Range)>();
        while (s_rentedInFinalizers.TryDequeue(out (IMemoryOwner<byte>, OwnerRange) rented))
        {
            innocent.Add(rented);
        }

        Assert.True(innocent.Count > 0, "no wrapper's finalizer ran");

        // Every owner in `innocent` was rented and never disposed: it must still reach its block.
        int broken = 0;
        foreach ((IMemoryOwner<byte> owner, _) in innocent)
        {
            if (Record.Exception(() => owner.Memory) is ObjectDisposedException)
            {
                broken++;
            }
        }

        // Let any quarantine run out (one tick at a time), then rent the size: no probe may overlap a live block.
        for (TimeSpan passed = TimeSpan.Zero; passed < SafetyCases.IdleDelay + s_pastTheQuarantine; passed += s_pastTheQuarantine)
        {
            SafetyCases.Advance(time, s_pastTheQuarantine);
        }

        var probes = new List<IMemoryOwner<byte>>();
        int shared = 0;
        for (int i = 0; i < Probes; i++)
        {
            IMemoryOwner<byte> probe = pool.Rent(size);
            probes.Add(probe);
            OwnerRange range = SafetyCases.RangeOf(probe);
            foreach ((_, OwnerRange live) in innocent)
            {
                if (range.Overlaps(live))
                {
                    shared++;
                }
            }
        }

        Assert.True(
            broken == 0 && shared == 0,
            $"of {innocent.Count} owners rented (and never disposed) after a finalizer disposed the block's previous owner, "
            + $"{broken} throw ObjectDisposedException because the block's finalizer then reclaimed the live block as a leak, "
            + $"and {shared} of their blocks were handed to another renter after the quarantine ({pool.GetStatistics().LeaksReclaimed} leaks reclaimed)");
        probes.ForEach(static probe => probe.Dispose());
        innocent.ForEach(static pair => pair.Owner.Dispose());
    }

    /// <summary>Wrappers made before and after their blocks (see FinalizerSafetyTests), so both finalizer orders occur.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropWrappersThatDisposeAndRentAgain(TieredMemoryPool pool, int size, int pairs)
    {
        for (int i = 0; i < pairs; i++)
        {
            DisposesAndRentsAgainWhenFinalized? wrapper = i % 2 == 0 ? new DisposesAndRentsAgainWhenFinalized(pool, size) : null;
            GC.Collect();
            IMemoryOwner<byte> owner = pool.Rent(size);
            GC.Collect();
            wrapper ??= new DisposesAndRentsAgainWhenFinalized(pool, size);
            wrapper.Owner = owner;
        }
    }

    /// <summary>A finalizer that disposes its owner, then rents the same size for its own later use.</summary>
    private sealed class DisposesAndRentsAgainWhenFinalized(TieredMemoryPool pool, int size)
    {
        ~DisposesAndRentsAgainWhenFinalized()
        {
            Owner?.Dispose();
            IMemoryOwner<byte> again = pool.Rent(size);
            s_rentedInFinalizers.Enqueue((again, SafetyCases.RangeOf(again)));
        }

        public IMemoryOwner<byte>? Owner { get; set; }
    }
}
