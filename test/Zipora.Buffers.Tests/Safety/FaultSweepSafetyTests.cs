using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A fixed script over every tier (rents, returns on this and other threads, a thread's exit, trims, idle ticks, a
/// pressure trim, rents at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>, segmented buffers, disposal) run once
/// for each call of the page allocator with that one call failed: refused, out of managed memory, or throwing. Whatever
/// the call, the failure reaches the caller as a documented exception at most, no live buffer is touched or shared, the
/// figures balance, each tier still rents, the cap serves as before, and every mapping is unmapped once, never under a
/// live buffer.
/// </summary>
[Collection(BackgroundFailureWatch.ProvokingTests)]
public sealed class FaultSweepSafetyTests
{
    private const long Cap = 40L << 20;

    /// <summary>
    /// The cases the suite runs, in about 8 s: every call failed every way, in the default mode (diagnostic mode's
    /// guard pages: ThrowingAllocatorRetryTests). The whole matrix (every <see cref="OwnerMode"/>: some 3,000 runs,
    /// 95 s) passed when the fixes went in; widen the modes to run it again.
    /// </summary>
    public static TheoryData<OwnerMode, AllocatorCall, FaultKind> Cases()
    {
        var data = new TheoryData<OwnerMode, AllocatorCall, FaultKind>();
        foreach (OwnerMode mode in new[] { OwnerMode.Default })
        {
            foreach (AllocatorCall call in Enum.GetValues<AllocatorCall>())
            {
                foreach (FaultKind kind in Enum.GetValues<FaultKind>())
                {
                    data.Add(mode, call, kind);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryCallFailedOnceLeavesThePoolSound(OwnerMode mode, AllocatorCall call, FaultKind kind)
    {
        long backgroundBefore = BackgroundFailures.Count;
        FaultSweepOutcome baseline = Run(mode, (call, 0, kind));
        Assert.True(baseline.Problems.Count == 0, $"{mode} with no fault:\n{string.Join('\n', baseline.Problems)}");
        int calls = baseline.Calls[(int)call];
        var failures = new List<string>();
        int injected = 0;
        for (int n = 1; n <= calls + 1; n++)
        {
            FaultSweepOutcome outcome = Run(mode, (call, n, kind), baseline);
            injected += outcome.Injected ? 1 : 0;
            failures.AddRange(outcome.Problems.Select(problem => $"{call} #{n} {kind}{Where(outcome)}: {problem}"));
            if (failures.Count > 30)
            {
                break;
            }
        }

        BackgroundFailureWatch.ProvokedSince(backgroundBefore);
        TestContext.Current.TestOutputHelper?.WriteLine($"{mode} {call} {kind}: {calls} calls in the script, {injected} runs injected");
        Assert.True(failures.Count == 0, $"{mode}, {call} {kind} ({calls} calls):\n{string.Join('\n', failures.Take(30))}");
    }

    private static string Where(FaultSweepOutcome outcome) => outcome.InjectedAt is null ? "" : $" (failed in {outcome.InjectedAt})";

    private static FaultSweepOutcome Run(OwnerMode mode, (AllocatorCall Call, int N, FaultKind Kind) fault, FaultSweepOutcome? baseline = null)
    {
        var outcome = new FaultSweepOutcome();
        var time = new FakeTimeProvider();
        var allocator = new FaultInjectingAllocator(mode == OwnerMode.PinnedArrays ? PageAllocator.PinnedArrays : PageAllocator.Default);
        TieredMemoryPoolOptions options = SafetyCases.Options(mode, time);
        options.PageAllocator = allocator;
        options.MaxBytesInUse = mode == OwnerMode.PinnedArrays ? 4 * Cap : Cap;
        var pool = new TieredMemoryPool(options);
        var script = new FaultSweepScript(pool, allocator, time, fault.Kind, fault.Call, outcome);
        allocator.LiveOwners = script.LiveRanges;
        allocator.Fault = fault;

        script.Step("rent each tier", true, () => script.RentEach(2));
        script.Step("bursts", true, () =>
        {
            foreach ((int size, int count) in new[] { (100, 300), (4096, 100), (8192, 40), (100_000, 4), (3_000_000, 3) })
            {
                script.Burst(size, count);
            }
        });
        script.Step("thread exit", true, () => script.OnThread(() =>
        {
            foreach (int size in FaultSweepScript.Sizes)
            {
                script.Burst(size, 3);
            }
        }));
        script.Step("rent here, return there", true, () =>
        {
            var rented = new List<IMemoryOwner<byte>>();
            foreach (int size in FaultSweepScript.Sizes)
            {
                rented.Add(script.Rent(size));
            }

            script.OnThread(() => rented.ForEach(script.Return));
        });
        script.Step("rent there, return here", true, () =>
        {
            var rented = new List<IMemoryOwner<byte>>();
            script.OnThread(() =>
            {
                foreach (int size in FaultSweepScript.Sizes)
                {
                    rented.Add(script.Rent(size));
                }
            });
            rented.ForEach(script.Return);
        });
        script.Step("trim", false, pool.Trim);
        script.Step("idle", false, () => script.Advance(1));
        script.Step("return half", false, () =>
        {
            List<IMemoryOwner<byte>> held = script.Held();
            for (int i = 0; i < held.Count; i += 2)
            {
                script.Return(held[i]);
            }
        });
        script.Step("pressure trim", false, ((IReclaimablePool)pool).TrimUnderPressure);
        script.Step("rent at the cap", true, () => script.RentToTheCap());
        // Memory whose pages cannot be dropped (pinned arrays behind an allocator of the user's) counts against the
        // cap for a delay after the probe let go of it.
        script.Step("idle after the cap", false, () => script.Advance(1));
        script.Step("segmented", true, script.Segmented);
        script.Step("idle again", false, () => script.Advance(3));
        script.Step("return the rest", false, () => script.Held().ForEach(script.Return));

        // Whatever failed has passed: the pool is balanced, rents in each tier, and gives back what it should.
        script.Step("trim and drain", false, () =>
        {
            pool.Trim();
            script.Advance(3);
        });
        // A fault in the drain's last tick may leave its work for the next: compared only when it came before.
        bool faultPassed = outcome.InjectedAt != "trim and drain";
        TieredMemoryPoolStatistics statistics = pool.GetStatistics();
        string? negative = SafetyCases.NegativeFigures(statistics);
        if (negative is not null)
        {
            outcome.Problems.Add($"negative figures: {negative}");
        }

        foreach (TierStatistics tier in new[] { statistics.Small, statistics.Medium, statistics.Large, statistics.Huge })
        {
            if (tier.Rents != tier.Returns || tier.BytesInUse != 0)
            {
                outcome.Problems.Add($"{tier.Name}: {tier.Rents} rents, {tier.Returns} returns, {tier.BytesInUse} bytes in use with nothing rented");
            }
        }

        if (faultPassed && statistics.BytesAwaitingRelease != 0)
        {
            outcome.Problems.Add($"{statistics.BytesAwaitingRelease} bytes awaiting release three delays after a trim\n{statistics}");
        }

        outcome.LiveAfterTrim = allocator.Live().Length;
        if (baseline is not null && faultPassed && outcome.LiveAfterTrim > baseline.LiveAfterTrim)
        {
            outcome.Problems.Add($"{outcome.LiveAfterTrim} mappings live three delays after a trim, {baseline.LiveAfterTrim} with no fault\n{statistics}");
        }

        script.Step("fresh rents", true, () =>
        {
            foreach (int size in FaultSweepScript.Sizes)
            {
                script.Return(script.Rent(size));
            }
        });
        script.Step("the cap", true, () => outcome.CapRents = script.RentToTheCap());
        if (baseline is not null && faultPassed && allocator.Injected && outcome.CapRents < baseline.CapRents && outcome.InjectedAt is not ("fresh rents" or "the cap"))
        {
            outcome.Problems.Add($"the cap holds {outcome.CapRents} rents of {FaultSweepScript.CapProbeSize} once the fault passed, {baseline.CapRents} with no fault\n{pool.GetStatistics()}");
        }

        script.Step("dispose", false, pool.Dispose);
        script.Advance(3);
        (nint Address, nuint Length)[] live = allocator.Live();
        if (live.Length != 0)
        {
            outcome.Problems.Add($"{live.Length} mappings live three delays after disposal: {string.Join(", ", live.Select(static m => $"0x{m.Address:x} ({m.Length})"))}\n{pool.GetStatistics()}");
        }

        outcome.Problems.AddRange(allocator.Violations);
        if (fault.N > 0 && allocator.Injected == false && fault.N <= (baseline?.Calls[(int)fault.Call] ?? 0))
        {
            outcome.Problems.Add("the fault was never injected: the script made fewer calls than without it");
        }

        for (int i = 0; i < 4; i++)
        {
            outcome.Calls[i] = allocator.Calls((AllocatorCall)i);
        }

        outcome.Injected = allocator.Injected;
        return outcome;
    }
}
