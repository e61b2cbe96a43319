using System;
using System.Runtime.CompilerServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// Makes the library's statics once per process, all at once, when its first pool, pool options or segmented buffer is made:
/// a type initializer that runs out of managed memory fails for good (every later use of the type throws
/// <see cref="TypeInitializationException"/>), so none may run where the GC heap may be at its limit.
/// </summary>
/// <remarks>
/// Made by whichever use came first, they failed for good in a process whose first pool was made at its GC heap limit
/// (the page allocators, the meter: every later pool's constructor threw), as <see cref="TieredMemoryPool.Shared"/>,
/// made at its first read, can be (SharedPoolsAtTheHeapLimitSafetyTests). The room they take is asked for first, in one
/// array: out of managed memory there, the caller gets <see cref="OutOfMemoryException"/> with none of them run, and
/// the next try makes them. The array is unreachable at once, so the first collection the initializers need
/// gives its room back to them.
/// </remarks>
internal static class LibraryStatics
{
    // What the initializers below allocate together in a fresh process (about 30 KB), with room to spare, below the
    // large object heap's threshold (their objects are small), and the mapping check's table when the check is on (the
    // tests': 1 MB, made whole up front, on the large object heap).
    private const int Room = 80 * 1024;
    private const int MappingCheckRoom = MappingLedger.Capacity * 2 * sizeof(ulong) + 4096;

    // No initializer of its own: reading it runs no type initializer.
    private static volatile bool s_made;

    /// <summary>Makes the statics if no call did yet; throws <see cref="OutOfMemoryException"/>, having made none, when there is no room for them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void EnsureMade()
    {
        if (!s_made)
        {
            Make();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Make()
    {
        bool mappingCheck = AppContext.TryGetSwitch(MappingLedger.SwitchName, out bool enabled) && enabled;
        AskForRoom(Room, mappingCheck ? MappingCheckRoom : 0);

        // Every type of the library with a static initializer that allocates, and those that make others' (the page
        // allocators make the mapping check's); those of background work first, as before they were gathered here.
        RuntimeHelpers.RunClassConstructor(typeof(ZiporaBuffersEventSource).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(PinnedMemoryCollector).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(ClassStack).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(ArrayThreadCache).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(PageAllocator).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(PoolMetrics).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(EventsOffTheCaller).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(ThreadCacheSlots).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(BufferSegmentCache).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(SegmentedBufferOptions).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(IdleTicker).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(IdleClock).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(MemoryPressureWatcher).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(StatisticsText).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(MemoryBudget).TypeHandle);
        _ = BackgroundFailures.Count + EventsOffTheCaller.Lost;
        s_made = true;
    }

    /// <summary>
    /// Allocates <paramref name="smallObjectBytes"/> on the small object heap, where the initializers' objects go, and
    /// <paramref name="largeObjectBytes"/> (0: none) on the large object heap, where the mapping check's table goes, and
    /// lets go of them. A method of its own: the JIT may keep a temporary of a method live to its end, and the
    /// initializers would then run with the room still taken.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AskForRoom(int smallObjectBytes, int largeObjectBytes)
    {
        GC.KeepAlive(GC.AllocateUninitializedArray<byte>(smallObjectBytes));
        if (largeObjectBytes != 0)
        {
            GC.KeepAlive(GC.AllocateUninitializedArray<byte>(largeObjectBytes));
        }
    }
}
