using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A kernel that refuses new mappings: after <c>mlockall(MCL_FUTURE)</c> every mapping is locked as it is made, and
/// past <c>RLIMIT_MEMLOCK</c> (with <c>CAP_IPC_LOCK</c>, which root has, dropped from the renting thread) mmap fails
/// with EAGAIN. Every rent must then succeed (the portable fallback) or throw the documented
/// <see cref="InsufficientMemoryException"/> naming its tier; the pool stays usable, and once everything is returned
/// and the pool disposed no mapping of its own is left.
/// </summary>
public sealed class LockedMemoryLimitSafetyTests
{
    private const long Megabyte = 1024 * 1024;
    private static readonly TimeSpan s_delay = SafetyCases.IdleDelay;

    // The runtime's W^X scheme maps a writable view of code at each method it compiles: past the limit that mmap fails
    // too, and the runtime stops the process ("Failed to create RW mapping for RX memory"), whatever the pool does.
    private static readonly (string, string)[] s_noDoubleMappedCode = [("DOTNET_EnableWriteXorExecute", "0")];

    [Fact]
    public void PastTheLockedMemoryLimitRentsThrowTheDocumentedExceptionThePoolStaysUsableAndLeavesNoMappingBehind()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryLimitSafetyTests), nameof(PastTheLockedMemoryLimitRentsThrowTheDocumentedExceptionThePoolStaysUsableAndLeavesNoMappingBehind), s_noDoubleMappedCode))
        {
            return;
        }

        Skip.Unless(ProcessLimits.Supported, "mlockall, setrlimit and capset are Linux's (capset numbered for x64)");
        // MCL_FUTURE alone: what is mapped now stays unlocked, so the limit (lowered, which needs no privilege) leaves
        // the pool a known headroom: one huge region (3 MB and its 2 MB alignment padding) and some smaller ones.
        int error = ProcessLimits.LockFuture();
        Skip.Unless(error == 0, $"mlockall(MCL_FUTURE) refused with errno {error}");
        long headroom = 6 * Megabyte;
        error = ProcessLimits.LimitLockedMemory((ulong)(ProcessLimits.Status("VmLck") + headroom));
        Assert.True(error == 0, $"setrlimit(RLIMIT_MEMLOCK) failed with errno {error}");
        error = ProcessLimits.DropIpcLockOnThisThread();
        Skip.Unless(error == 0, $"capset could not drop CAP_IPC_LOCK (errno {error}): the limit would not apply");

        var allocator = new LiveMappingsAllocator();
        var time = new FakeTimeProvider();

        // In a memory cgroup the pool starts the process's pressure timer, whose thread cannot start here: reported, and
        // the pool is made without it.
        long failuresBefore = BackgroundFailures.Count;
        var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = s_delay });
        BackgroundFailureWatch.ProvokedSince(failuresBefore);
        var owners = new List<IMemoryOwner<byte>>();
        var refusals = new Dictionary<string, int>();

        // Largest first, each tier until it is refused: then the smaller tiers meet a limit already reached.
        (int Size, string Tier)[] tiers = [(3_000_000, "huge"), (100_000, "large"), (4096, "medium"), (100, "small")];
        foreach ((int size, string tier) in tiers)
        {
            for (int rent = 0; rent < 20_000 && !refusals.ContainsKey(tier); rent++)
            {
                try
                {
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    owner.Memory.Span.Fill((byte)owners.Count);
                    owners.Add(owner);
                }
                catch (InsufficientMemoryException refused)
                {
                    Assert.True(refused.Message.Contains($"the {tier} tier", StringComparison.Ordinal), $"a refused {size} B rent should name the {tier} tier: {refused.Message}");
                    refusals[tier] = rent;
                }
            }
        }

        TieredMemoryPoolStatistics full = pool.GetStatistics();
        string summary = string.Create(CultureInfo.InvariantCulture, $"{owners.Count} rents held, refused after {string.Join(", ", refusals)}; {full.FallbackAllocations} fallbacks, in use {full.BytesInUse / 1024} KB, VmLck {ProcessLimits.Status("VmLck") / 1024} KB");
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
        Assert.True(refusals.ContainsKey("huge"), $"{headroom} bytes of headroom should refuse some huge rent: {summary}");
        SafetyCases.AssertDisjoint(owners, "rents held past the locked memory limit");
        for (int i = 0; i < owners.Count; i++)
        {
            Assert.True(owners[i].Memory.Span.IndexOfAnyExcept((byte)i) < 0, $"rent {i} lost what it wrote: {summary}");
        }

        // Still usable: once everything is returned and unmapped (a delay later), every tier rents again.
        owners.ForEach(owner => owner.Dispose());
        pool.Trim();
        SafetyCases.Advance(time, s_delay + (s_delay / 4));
        TieredMemoryPoolStatistics returned = pool.GetStatistics();
        Assert.True(returned.BytesInUse == 0 && returned.BytesAwaitingRelease == 0, $"everything returned and a delay past: {returned}");
        TestContext.Current.TestOutputHelper?.WriteLine($"all returned: VmLck {ProcessLimits.Status("VmLck") / 1024} KB");
        foreach ((int size, string tier) in tiers)
        {
            using IMemoryOwner<byte> again = pool.Rent(size);
            again.Memory.Span.Fill(1);
        }

        pool.Dispose();
        SafetyCases.AssertDrainedThreeDelaysLater(pool, time);
        TieredMemoryPoolStatistics drained = pool.GetStatistics();
        Assert.True(drained.UnmapFailures == 0, $"{drained.UnmapFailures} unmaps refused under the limit: {drained}");
        allocator.AssertNoneLive($"the pool disposed and drained after renting past the locked memory limit ({summary})");
        ProcessLimits.RestoreLockedMemoryLimit();
    }

    /// <summary>
    /// A pool's first dispose used to read the shared pool's static field, so the shared pool was built right then,
    /// with a real timer whose thread could not be started here (its stack is a new mapping past the limit): the type
    /// initializer failed, and every dispose of every pool in the process threw <see cref="TypeInitializationException"/>
    /// from then on, the pool's own ticks included, so none was ever drained.
    /// </summary>
    [Fact]
    public void ADisposeWhereNoThreadCanStartNeitherThrowsNorBreaksEveryLaterDisposeInTheProcess()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(LockedMemoryLimitSafetyTests), nameof(ADisposeWhereNoThreadCanStartNeitherThrowsNorBreaksEveryLaterDisposeInTheProcess), s_noDoubleMappedCode))
        {
            return;
        }

        Skip.Unless(ProcessLimits.Supported, "mlockall, setrlimit and capset are Linux's (capset numbered for x64)");
        int error = ProcessLimits.LockFuture();
        Skip.Unless(error == 0, $"mlockall(MCL_FUTURE) refused with errno {error}");
        error = ProcessLimits.LimitLockedMemory((ulong)(ProcessLimits.Status("VmLck") + (512 * 1024)));
        Assert.True(error == 0, $"setrlimit(RLIMIT_MEMLOCK) failed with errno {error}");
        error = ProcessLimits.DropIpcLockOnThisThread();
        Skip.Unless(error == 0, $"capset could not drop CAP_IPC_LOCK (errno {error}): the limit would not apply");

        var time = new FakeTimeProvider();
        var allocator = new LiveMappingsAllocator();
        for (int round = 0; round < 3; round++)
        {
            // Each pool made tries to start the process's cgroup pressure timer again, and fails here: reported.
            long failuresBefore = BackgroundFailures.Count;
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { PageAllocator = allocator, TimeProvider = time, IdleReleaseDelay = s_delay });
            BackgroundFailureWatch.ProvokedSince(failuresBefore);
            using (IMemoryOwner<byte> owner = pool.Rent(100))
            {
                owner.Memory.Span.Fill(1);
            }

            Exception? thrown = Record.Exception(pool.Dispose);
            Assert.True(thrown is null, $"dispose {round} of a pool on a fake clock threw where no thread can start: {thrown}");
            SafetyCases.Advance(time, s_delay * 2);
            TieredMemoryPoolStatistics drained = pool.GetStatistics();
            Assert.True(drained.BytesInUse == 0 && drained.BytesAwaitingRelease == 0, $"pool {round} not drained two delays after its dispose: {drained}");
        }

        allocator.AssertNoneLive("three pools disposed where no thread can start, two delays later");

        ProcessLimits.RestoreLockedMemoryLimit();
    }
}
