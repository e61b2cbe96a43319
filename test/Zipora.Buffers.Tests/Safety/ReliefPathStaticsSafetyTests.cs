using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// What gives memory back (a trim, a tick of the idle clock, a dispose, a dropped pool's finalizer) runs when memory is
/// short, maybe first at the GC heap limit. A static lambda's class (the compiler's <c>&lt;&gt;c</c>) makes its statics
/// at the first use of any of its type's static lambdas, and a type initializer that fails there leaves the type
/// throwing <see cref="TypeInitializationException"/> at every later use, for good: every later trim of every pool, or,
/// out of a finalizer, the end of the process. So the types on those paths make them with the pool, while there is room.
/// </summary>
public sealed class ReliefPathStaticsSafetyTests
{
    private const BindingFlags Statics = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;

    // The types whose methods the trims, ticks, disposes and finalizer run, with the slab tiers as the pool makes them.
    private static readonly Type[] s_reliefTypes =
    [
        typeof(TieredMemoryPool), typeof(CachedSlabTier<SmallClasses>), typeof(CachedSlabTier<MediumClasses>), typeof(SmallTier),
        typeof(MediumTier), typeof(SlabHeap), typeof(RegionTier), typeof(LargeTier), typeof(HugeTier),
        typeof(SegmentedBufferCounters), typeof(DeferredUnmaps), typeof(PageSource), typeof(LeakQuarantine), typeof(IdleReleaser),
        typeof(IdleTicker), typeof(MemoryPressureWatcher), typeof(PinnedMemoryCollector), typeof(BackgroundFailures), typeof(EventsOffTheCaller),
    ];

    [Fact]
    public void TheStaticLambdasOfWhatGivesMemoryBackAreMadeWithThePool()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(ReliefPathStaticsSafetyTests), nameof(TheStaticLambdasOfWhatGivesMemoryBackAreMadeWithThePool)))
        {
            return;
        }

        // A process that made a pool and rented and returned in every tier, and never trimmed, ticked or disposed one.
        var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, new FakeTimeProvider()));
        foreach (int size in SafetyCases.OneSizePerTier)
        {
            pool.Rent(size).Dispose();
        }

        List<string> madeLater = [.. s_reliefTypes.Where(static type => !StaticLambdasMade(type)).Select(static type => type.Name)];
        GC.KeepAlive(pool);
        Assert.True(madeLater.Count == 0, $"the static lambdas of {string.Join(", ", madeLater)} are made at their first use, not with the pool");
    }

    /// <summary>
    /// Whether the type's static lambdas' class has made its statics: it has none, or one of its cached delegates is
    /// made (reading them makes the statics, but a delegate is cached only by a use of its lambda).
    /// </summary>
    private static bool StaticLambdasMade(Type type)
    {
        Type? lambdas = type.IsGenericType
            ? type.GetGenericTypeDefinition().GetNestedType("<>c", BindingFlags.NonPublic)?.MakeGenericType(type.GetGenericArguments())
            : type.GetNestedType("<>c", BindingFlags.NonPublic);
        if (lambdas is null)
        {
            return true;
        }

        FieldInfo[] cached = [.. lambdas.GetFields(Statics).Where(static field => field.Name.StartsWith("<>9__", StringComparison.Ordinal))];
        return cached.Length == 0 || cached.Any(static field => field.GetValue(null) is not null);
    }
}
