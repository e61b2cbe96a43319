using System;
using System.Buffers;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Event listeners that throw from every event, made and disposed over and over on one thread while pools on others
/// are made, disposed twice over their buffers (diagnostic mode's double-dispose event is written on the disposing
/// thread) and leak buffers (written on the finalizer thread): a listener's exception must never reach a dispose, a
/// rent or the finalizer, and every misuse is still counted.
/// </summary>
/// <remarks>Forces full garbage collections and listens to the pools' event source, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class ThrowingListenerChurnTests
{
    private const int Rounds = 40;

    [Fact]
    public async Task ListenersThatThrowComingAndGoingNeverReachTheCallersAndLoseNoCount()
    {
        CancellationToken token = TestContext.Current.CancellationToken;
        using var done = new CancellationTokenSource();
        int listeners = 0;
        Task churn = Task.Run(() =>
        {
            while (!done.IsCancellationRequested)
            {
                using var listener = new ThrowingListener();
                Thread.Sleep(1);
                listeners++;
            }
        }, token);

        long doubleDisposes = 0;
        long leaks = 0;
        for (int round = 0; round < Rounds; round++)
        {
            var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = DiagnosticLevel.All, IdleReleaseDelay = TimeSpan.FromMilliseconds(50) });
            foreach (int size in (int[])[64, 5_000, 200_000])
            {
                IMemoryOwner<byte> owner = pool.Rent(size);
                owner.Dispose();
                owner.Dispose();
            }

            LeakOne(pool);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            TieredMemoryPoolStatistics statistics = pool.GetStatistics();
            doubleDisposes += statistics.DoubleDisposes;
            leaks += statistics.LeaksDetected;
            pool.Dispose();
        }

        await done.CancelAsync();
        await churn;
        TestContext.Current.SendDiagnosticMessage($"{listeners} listeners made and disposed over {Rounds} pools");
        Assert.Equal(3 * Rounds, doubleDisposes);
        Assert.Equal(Rounds, leaks);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LeakOne(TieredMemoryPool pool) => _ = pool.Rent(1_000);

    /// <summary>Throws from every event of the pools' source, as a broken logging sink would.</summary>
    private sealed class ThrowingListener : PoolEventListener
    {
        protected override void OnEventWritten(EventWrittenEventArgs eventData) =>
            throw new InvalidOperationException($"the listener refuses {eventData.EventName}");
    }
}
