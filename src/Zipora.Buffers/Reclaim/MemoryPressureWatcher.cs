using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// Trims a pool when the GC reports high memory load. An instance that is never referenced is finalized at every
/// gen2 collection; its finalizer checks <see cref="GC.GetGCMemoryInfo()"/> (which respects container limits) and
/// registers itself again, until the pool is gone or disposed.
/// </summary>
internal sealed class MemoryPressureWatcher
{
    // Trim a little before the GC's own high-load threshold (90% of memory by default), as the runtime's ArrayPool does.
    private const double PressureShareOfHighLoad = 0.9;

    private readonly WeakReference<IReclaimablePool> _pool;

    private MemoryPressureWatcher(IReclaimablePool pool) => _pool = new WeakReference<IReclaimablePool>(pool);

    ~MemoryPressureWatcher()
    {
        if (!_pool.TryGetTarget(out IReclaimablePool? pool) || pool.IsDisposed)
        {
            return;
        }

        GCMemoryInfo info = GC.GetGCMemoryInfo();
        if (info.MemoryLoadBytes >= info.HighMemoryLoadThresholdBytes * PressureShareOfHighLoad)
        {
            // Not on the finalizer thread: trimming takes locks and makes system calls.
            ThreadPool.UnsafeQueueUserWorkItem(static pool => pool.Trim(), pool, preferLocal: false);
        }

        GC.ReRegisterForFinalize(this);
    }

    /// <summary>Starts watching; the watcher lives only in the finalization queue.</summary>
    public static void Start(IReclaimablePool pool) => _ = new MemoryPressureWatcher(pool);
}
