using System;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A plugin host loads the pool into a collectible <see cref="System.Runtime.Loader.AssemblyLoadContext"/>, lets the
/// plugin use it and unloads it: the context must be collected (nothing of the library, no timer, meter, event source,
/// watcher or thread-static, keeps it alive for good) and the plugin's native memory unmapped.
/// </summary>
/// <remarks>
/// Each runs in a process of its own: the context's unload is seen through full collections, and the process's
/// mappings are read.
/// </remarks>
public sealed class CollectibleContextUnloadTests
{
    // The shared pool keeps the default IdleReleaseDelay (10 s): what it let go of stays mapped that long (a stale span
    // may still write it), and its ticks hold the context until then, ticking a quarter delay apart. A leaked buffer
    // reclaimed at the context's collection waits out the quarantine and then the disposed pool's delay: 26 s measured.
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(60);

    [Fact]
    public void APluginThatUsedEveryPartOfThePoolIsCollectedAfterUnloadAndItsMemoryUnmapped()
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        if (IsolatedProcess.RunsElsewhere(GetType(), nameof(APluginThatUsedEveryPartOfThePoolIsCollectedAfterUnloadAndItsMemoryUnmapped)))
        {
            return;
        }

        string uses = Environment.GetEnvironmentVariable("ZIPORA_PLUGIN_USES") ?? "all";
        (WeakReference context, long[] blocks) = LoadUseAndUnload(uses);
        var clock = Stopwatch.StartNew();
        while (context.IsAlive && clock.Elapsed < s_patience)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(50);
        }

        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"uses {uses}: context alive {context.IsAlive} after {clock.Elapsed.TotalSeconds:F1} s"));
        Assert.False(context.IsAlive, $"the plugin's context (uses: {uses}) was still alive {s_patience.TotalSeconds} s after its unload");
        int mapped = Enumerable.Range(0, blocks.Length / 2).Count(i => ProcessMappings.IsMappedNow((nint)blocks[2 * i], blocks[(2 * i) + 1]));
        Assert.True(mapped == 0, $"{mapped} of the {blocks.Length / 2} regions and huge buffers the plugin rented were still mapped after its context was collected");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Context, long[] Blocks) LoadUseAndUnload(string uses)
    {
        var context = new PluginContext(AppContext.BaseDirectory);
        Assembly plugin = context.LoadFromAssemblyName(typeof(UnloadablePlugin).Assembly.GetName());
        Assert.NotSame(typeof(UnloadablePlugin).Assembly, plugin);
        MethodInfo run = plugin.GetType(typeof(UnloadablePlugin).FullName!, throwOnError: true)!.GetMethod(nameof(UnloadablePlugin.Run))!;
        long[] blocks = (long[])run.Invoke(null, [uses])!;
        context.Unload();
        return (new WeakReference(context), blocks);
    }
}
