using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Time.Testing;
using static Zipora.Buffers.Tests.CachedRegionPageDropCases;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The page drop's storm: short-lived threads rent regions past their slots, stamp them and check the stamps while
/// the clock ticks (each fourth tick after a return drops the cached regions' pages), trims, returns over a small cache
/// limit and statistics reads race them, in every backend mode, with MADV_DONTNEED and MADV_FREE.
/// </summary>
public sealed partial class CachedRegionPageDropSafetyTests
{
    public static TheoryData<int, OwnerMode, bool> Cases()
    {
        var data = new TheoryData<int, OwnerMode, bool>();
        foreach (int size in new[] { LargeSize, HugeSize })
        {
            foreach (OwnerMode mode in new[] { OwnerMode.Default, OwnerMode.ReuseOwners, OwnerMode.PinnedArrays, OwnerMode.DiagnosticsAll })
            {
                data.Add(size, mode, false);
            }

            data.Add(size, OwnerMode.Default, true);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RegionsRentedWhileTicksDropCachedPagesKeepTheirStampsAndADisposedPoolUnmapsEverything(int size, OwnerMode mode, bool lazyFree)
    {
        var time = new FakeTimeProvider();
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.UseLazyFree = lazyFree;
        options.AdaptiveCaches = false;
        options.RegionCacheMaxCount = 3;
        options.HugeRegionCacheMaxCount = 3;
        var pool = new TieredMemoryPool(options);
        var failures = new ConcurrentQueue<string>();
        long rounds = 0;
        long nextStamp = 0;
        bool stop = false;

        void Renter()
        {
            try
            {
                // A thread lives for a few rounds, so exited threads' slots are retired into the cache as the ticks run.
                for (int round = 0; round < 20 && !Volatile.Read(ref stop) && failures.IsEmpty; round++)
                {
                    var owners = new List<(IMemoryOwner<byte> Owner, long Stamp)>();
                    for (int i = 0; i < 3; i++)
                    {
                        IMemoryOwner<byte> owner = pool.Rent(size);
                        long stamp = Interlocked.Increment(ref nextStamp);
                        SafetyCases.Stamp(owner, stamp, "storm");
                        owners.Add((owner, stamp));
                    }

                    Thread.SpinWait(500);
                    foreach ((IMemoryOwner<byte> owner, long stamp) in owners)
                    {
                        if (!SafetyCases.HasStamp(owner, stamp, "storm"))
                        {
                            failures.Enqueue($"{mode} {size}: a rented region {SafetyCases.RangeOf(owner)} lost its stamp {stamp} while the ticks dropped cached pages (zeroed by a drop, or handed to a second owner)");
                        }

                        owner.Dispose();
                    }

                    Interlocked.Increment(ref rounds);
                }
            }
            catch (Exception error) when (error is not ObjectDisposedException || !Volatile.Read(ref stop))
            {
                failures.Enqueue($"{mode} {size}: a renter threw {error}");
            }
        }

        var renters = new List<Thread>();
        var elapsed = Stopwatch.StartNew();
        int chaos = 0;
        while (elapsed.Elapsed < TimeSpan.FromSeconds(1) && failures.IsEmpty)
        {
            renters.RemoveAll(thread => !thread.IsAlive);
            while (renters.Count < 2)
            {
                var thread = new Thread(Renter);
                thread.Start();
                renters.Add(thread);
            }

            // Idle regions returned past the cache's limit, left to reach their drop; a tick; now and then a trim.
            ReturnToSharedCache(RentFilled(pool, size, 4, 0x40));
            SafetyCases.Advance(time, Delay / 4);
            if (++chaos % 5 == 0)
            {
                pool.Trim();
            }

            string? negative = SafetyCases.NegativeFigures(pool.GetStatistics());
            if (negative is not null)
            {
                failures.Enqueue($"{mode} {size}: negative statistics during the storm: {negative}");
            }
        }

        Volatile.Write(ref stop, true);
        renters.ForEach(thread => thread.Join());
        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        Assert.True(Interlocked.Read(ref rounds) > 20, $"only {rounds} rounds of rents ran");
        Assert.Equal(0, pool.GetStatistics().BytesInUse);

        pool.Dispose();
        SafetyCases.Advance(time, 3 * Delay);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(NothingMapped(drained), $"{mode} {size}: three delays after its disposal the pool still holds mappings: {Unmapped(drained)}");
    }
}
