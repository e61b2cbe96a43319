using System;
using System.Reflection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A process's first read of <see cref="TieredMemoryPool.Shared"/> or <see cref="TieredArrayPool.Shared"/> comes
/// where managed memory has run out (a default <see cref="SegmentedBufferWriter"/> made in a container at its GC heap
/// limit reads the former). Made by a static initializer, the pool failed for good there: a type initializer that
/// threw throws <see cref="TypeInitializationException"/> at every later read. A read at the limit may throw
/// <see cref="OutOfMemoryException"/>; once there is room again the pool must be there.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class SharedPoolsAtTheHeapLimitSafetyTests
{
    private const int HeadroomStep = 1024;
    private const int MostHeadroom = 256 * 1024;

    [Fact]
    public void TheSharedMemoryPoolsFirstReadAtTheHeapLimitLeavesItThereOnceThereIsRoom()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(SharedPoolsAtTheHeapLimitSafetyTests), nameof(TheSharedMemoryPoolsFirstReadAtTheHeapLimitLeavesItThereOnceThereIsRoom)))
        {
            return;
        }

        AssertNotMadeYet(typeof(TieredMemoryPool));
        long backgroundFailures = BackgroundFailures.Count;
        string sweep = FirstRunSweep.AtTheHeapLimit(() => _ = TieredMemoryPool.Shared, HeadroomStep, MostHeadroom, "the first read");

        Exception? later = Record.Exception(() =>
        {
            TieredMemoryPool.Shared.Rent(4096).Dispose();
            using var writer = new SegmentedBufferWriter();
            writer.GetSpan(100).Fill(1);
            writer.Advance(100);
            Assert.Equal(100, writer.GetReadOnlySequence().Length);
        });
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(later is null, $"{sweep}; with room: {later}");
        Assert.Same(TieredMemoryPool.Shared, TieredMemoryPool.Shared);
        Assert.Equal(TieredMemoryPool.SharedName, TieredMemoryPool.Shared.Name);
        TieredMemoryPool.Shared.Dispose();
        Assert.False(TieredMemoryPool.Shared.IsDisposed, "the shared pool was disposed");
    }

    [Fact]
    public void TheSharedArrayPoolsFirstReadAtTheHeapLimitLeavesItThereOnceThereIsRoom()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(SharedPoolsAtTheHeapLimitSafetyTests), nameof(TheSharedArrayPoolsFirstReadAtTheHeapLimitLeavesItThereOnceThereIsRoom)))
        {
            return;
        }

        AssertNotMadeYet(typeof(TieredArrayPool));
        long backgroundFailures = BackgroundFailures.Count;
        string sweep = FirstRunSweep.AtTheHeapLimit(() => _ = TieredArrayPool.Shared, HeadroomStep, MostHeadroom, "the first read");

        Exception? later = Record.Exception(() => TieredArrayPool.Shared.Return(TieredArrayPool.Shared.Rent(4096)));
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        Assert.True(later is null, $"{sweep}; with room: {later}");
        Assert.Same(TieredArrayPool.Shared, TieredArrayPool.Shared);
        Assert.Equal(TieredArrayPool.SharedName, TieredArrayPool.Shared.Name);
    }

    /// <summary>Fails when something in the child read the pool before the sweep: its first read would not be at the limit.</summary>
    private static void AssertNotMadeYet(Type poolType)
    {
        FieldInfo? field = poolType.GetField("s_shared", BindingFlags.NonPublic | BindingFlags.Static);
        Assert.True(field is null || field.GetValue(null) is null, $"{poolType.Name}.Shared was made before the sweep: the test proves nothing");
    }
}
