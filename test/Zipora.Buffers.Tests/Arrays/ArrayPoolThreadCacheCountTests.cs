using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Arrays: the statistics are the memory pool's, "plus <c>UnpooledRents</c> and <c>ThreadCaches</c>". No test
/// read <see cref="TieredArrayPoolStatistics.ThreadCaches"/>: reporting 0 passed every test. It is the figure that
/// shows a thread churn leaving caches behind, so it must count the threads that use the pool and drop those that
/// exited.
/// </summary>
public sealed class ArrayPoolThreadCacheCountTests
{
    private const int OtherThreads = 3;

    [Fact]
    public void EachThreadThatUsedThePoolHasOneCacheUntilItExits()
    {
        var pool = new TieredArrayPool(new TieredArrayPoolOptions { TimeProvider = new FakeTimeProvider() });
        Assert.Equal(0, pool.GetStatistics().ThreadCaches);
        pool.Return(pool.Rent(4096));
        pool.Return(pool.Rent(100));
        Assert.Equal(1, pool.GetStatistics().ThreadCaches);

        using var used = new CountdownEvent(OtherThreads);
        using var exit = new ManualResetEventSlim();
        var threads = new Thread[OtherThreads];
        for (int i = 0; i < OtherThreads; i++)
        {
            threads[i] = new Thread(() =>
            {
                pool.Return(pool.Rent(4096));
                used.Signal();
                exit.Wait();
            });
            threads[i].Start();
        }

        try
        {
            Assert.True(used.Wait(5_000), "the threads did not use the pool");
            Assert.Equal(1 + OtherThreads, pool.GetStatistics().ThreadCaches);
        }
        finally
        {
            exit.Set();
            foreach (Thread thread in threads)
            {
                thread.Join();
            }
        }

        // An exited thread's cache is retired (its arrays kept in the depots) when the statistics are read.
        Assert.Equal(1, pool.GetStatistics().ThreadCaches);
    }
}
