using System;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>Options at their far ends: what the validation accepts must not cost what nobody asked for.</summary>
public sealed partial class ArrayPoolAttackTests
{
    [Theory]
    [InlineData(int.MaxValue, int.MaxValue, 16)]
    [InlineData(int.MaxValue, int.MaxValue, 4096)]
    [InlineData(int.MaxValue, 4 * 1024 * 1024, 16)]
    [InlineData(65_537, int.MaxValue, 16)]
    [InlineData(65_536, int.MaxValue, 16)]
    public void ACountOfCachedArraysTooLargeToMeanAnythingIsRefusedByNameOrCostsTheFirstRentNoMoreThanAFewMegabytes(int threadCacheMaxArrays, int threadCacheMaxBytesPerClass, int length)
    {
        // "No limit" written as int.MaxValue: a thread's stack of a class is allocated whole on the class's first rent,
        // ThreadCacheMaxArrays slots (as far as the byte budget allows), before a single array is cached in it.
        var options = new TieredArrayPoolOptions
        {
            ThreadCacheMaxArrays = threadCacheMaxArrays,
            ThreadCacheMaxBytesPerClass = threadCacheMaxBytesPerClass,
            IdleReleaseDelay = Timeout.InfiniteTimeSpan,
        };
        TieredArrayPool? pool = null;
        Exception? refused = Record.Exception(() => pool = new TieredArrayPool(options));
        if (refused is not null)
        {
            ArgumentException error = Assert.IsAssignableFrom<ArgumentException>(refused);
            Assert.Equal(nameof(TieredArrayPoolOptions.ThreadCacheMaxArrays), error.ParamName);
            return;
        }

        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            byte[] array = pool!.Rent(length);
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            pool.Return(array);
        });
        thread.Start();
        thread.Join();
        Assert.True(allocated < 4 * 1024 * 1024, $"the first Rent({length}) on a thread allocated {allocated:N0} bytes");
    }
}
