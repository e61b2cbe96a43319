using System.Buffers;
using System.Diagnostics;

namespace Zipora.Buffers.Tests;

/// <summary>What a double dispose costs when nobody listens to the pool's events.</summary>
public sealed class DoubleDisposeReportTests
{
    /// <summary>
    /// The event source promises that nothing is formatted when nobody listens: a double dispose with no listener
    /// takes its own stack (the README: always in its report) and counts itself, but does not turn the three stacks
    /// into the report's text (with file and line, kilobytes and tens of microseconds) for nobody to read.
    /// </summary>
    [Fact]
    public void ADoubleDisposeWithNoListenerIsCountedWithoutFormattingItsReport()
    {
        if (IsolatedProcess.RunsElsewhere(typeof(DoubleDisposeReportTests), nameof(ADoubleDisposeWithNoListenerIsCountedWithoutFormattingItsReport)))
        {
            return;
        }

        Assert.False(ZiporaBuffersEventSource.Log.IsEnabled(), "a listener is enabled in the child process");
        using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All });
        DisposeTwice(pool.Rent(4096));
        IMemoryOwner<byte> owner = pool.Rent(4096);
        owner.Dispose();

        // The one stack a second dispose must take, at about the same depth: what the dispose may allocate, twice over.
        _ = ThreadAllocations.During(() => _ = new StackTrace(fNeedFileInfo: false));
        long stack = ThreadAllocations.During(() => _ = new StackTrace(fNeedFileInfo: false));
        long allocated = ThreadAllocations.During(owner.Dispose);

        Assert.Equal(2, pool.GetStatistics().DoubleDisposes);
        Assert.True(allocated <= 2 * stack, $"a double dispose with no listener allocated {allocated} bytes, a stack {stack}: its report was formatted for nobody");
    }

    private static void DisposeTwice(IMemoryOwner<byte> owner)
    {
        owner.Dispose();
        owner.Dispose();
    }
}
