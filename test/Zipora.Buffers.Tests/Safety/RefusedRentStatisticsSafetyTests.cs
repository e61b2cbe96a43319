using System;
using System.Buffers;
using System.Collections.Generic;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Statistics stay exact when the pool is quiet, also after a rent that failed: a rent refused at
/// <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> hands nothing out, so it adds nothing to any counter.
/// </summary>
public sealed class RefusedRentStatisticsSafetyTests
{
    [Theory]
    [InlineData(100)]
    [InlineData(4096)]
    [InlineData(100_000)]
    public void ARentRefusedAtMaxBytesInUseCountsNoRequestedBytes(int size)
    {
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions
        {
            MaxBytesInUse = 256 * 1024,
            TimeProvider = new FakeTimeProvider(),
            IdleReleaseDelay = SafetyCases.IdleDelay,
        });

        var owners = new List<IMemoryOwner<byte>>();
        InsufficientMemoryException? refused = null;
        while (refused is null && owners.Count < 100_000)
        {
            try
            {
                owners.Add(pool.Rent(size));
            }
            catch (InsufficientMemoryException error)
            {
                refused = error;
            }
        }

        Assert.NotNull(refused);
        TierStatistics tier = size switch
        {
            < 1024 => pool.GetStatistics().Small,
            <= 16 * 1024 => pool.GetStatistics().Medium,
            _ => pool.GetStatistics().Large,
        };

        Assert.Equal(owners.Count, tier.Rents);
        Assert.True(
            (long)owners.Count * size == tier.BytesRequested,
            $"{owners.Count} rents of {size} bytes succeeded and one was refused, but the {tier.Name} tier counts {tier.BytesRequested} bytes requested, not {(long)owners.Count * size}");
        owners.ForEach(static owner => owner.Dispose());
    }
}
