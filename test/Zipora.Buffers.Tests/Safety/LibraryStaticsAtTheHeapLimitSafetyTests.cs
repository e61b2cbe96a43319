using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Time.Testing;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Once a pool is made, no type initializer of the library is left to run: any that is could run first where the GC heap
/// is at its limit, and one that runs out of memory there fails for good (every later use of its type throws
/// <see cref="TypeInitializationException"/>). The first pool makes them all while there is room (LibraryStatics); a
/// type given a static initializer that allocates and not added there fails this test.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class LibraryStaticsAtTheHeapLimitSafetyTests
{
    private const int FullHeapProbe = 8 * 1024;

    [Fact]
    public void NoTypeInitializerOfTheLibraryIsLeftToRunOnceAPoolIsMade()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(LibraryStaticsAtTheHeapLimitSafetyTests), nameof(NoTypeInitializerOfTheLibraryIsLeftToRunOnceAPoolIsMade)))
        {
            return;
        }

        // Every non-generic type with a type initializer, but the compiler's classes of static lambdas (made with their
        // owners: ReliefPathStaticsSafetyTests) and the hosting's check (made when services are registered, at start-up).
        Type[] initialized =
        [
            .. new[] { typeof(TieredMemoryPool).Assembly, typeof(PageAllocator).Assembly }
                .SelectMany(static assembly => assembly.GetTypes())
                .Where(static type => type.TypeInitializer is not null && !type.ContainsGenericParameters && !type.Name.StartsWith("<>c", StringComparison.Ordinal) && type.Name != "FactoryRegistrationCheck" && type.DeclaringType?.Name.StartsWith("<>c", StringComparison.Ordinal) != true),
        ];
        // Nothing is allocated at the limit to record a failure: a flag per type, set in place.
        bool[] failed = new bool[initialized.Length];
        long backgroundFailures = BackgroundFailures.Count;

        var pool = new TieredMemoryPool(SafetyCases.Options(OwnerMode.Default, new FakeTimeProvider()));
        var arrays = new TieredArrayPool();
        bool full = false;
        var filler = new List<byte[]>(400_000);
        Exception? thrown = HeapFiller.ThrownOnAFreshThread(
            withRoom: null,
            atTheLimit: () =>
            {
                full = HeapFiller.TopUpUntilFull(filler, FullHeapProbe);
                for (int i = 0; i < initialized.Length; i++)
                {
                    try
                    {
                        RuntimeHelpers.RunClassConstructor(initialized[i].TypeHandle);
                    }
                    catch (Exception error) when (error is TypeInitializationException or OutOfMemoryException)
                    {
                        failed[i] = true;
                    }
                }
            },
            filler);
        filler.Clear();
        GC.Collect();

        // The pools' pressure trims ran out of memory meanwhile: this test's doing.
        BackgroundFailureWatch.ProvokedSince(backgroundFailures);
        GC.KeepAlive(pool);
        GC.KeepAlive(arrays);

        Assert.True(thrown is null, $"running the type initializers at the limit threw: {thrown}");
        Assert.True(full, $"the heap had room for {FullHeapProbe} bytes after the fill: the test proves nothing");
        string[] failedTypes = [.. initialized.Where((_, i) => failed[i]).Select(static type => type.FullName!)];
        Assert.True(failedTypes.Length == 0, $"of {initialized.Length} types with a type initializer, these ran first at the GC heap limit and failed for good: {string.Join(", ", failedTypes)}");
        TestContext.Current.SendDiagnosticMessage($"{initialized.Length} types with a type initializer, all made with the first pool: {string.Join(", ", initialized.Select(static type => type.Name))}");
    }
}
