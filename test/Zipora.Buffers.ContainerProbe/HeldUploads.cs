using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;

/// <summary>
/// The burst's uploads, each held whole in Kestrel's input pipe (read, examined and not consumed, so the bytes stay in
/// the pool's blocks) until released. The handlers count the bodies they hold whole, so the probe waits for the burst
/// itself rather than for a reading of the pool that timing and the kernel's socket buffers decide.
/// </summary>
internal sealed class HeldUploads : IDisposable
{
    private readonly SemaphoreSlim _release = new(0);
    private readonly ConcurrentQueue<PipeReader> _readers = new();
    private int _held;

    /// <summary>The uploads whose whole body Kestrel's pipe holds.</summary>
    public int Held => Volatile.Read(ref _held);

    /// <summary>Waits until Kestrel's pipe holds the whole body (<paramref name="length"/> bytes), then until released.</summary>
    public async Task HoldAsync(PipeReader body, long length, CancellationToken cancellation)
    {
        _readers.Enqueue(body);
        while (true)
        {
            ReadResult result = await body.ReadAsync(cancellation);
            if (result.Buffer.Length >= length)
            {
                body.AdvanceTo(result.Buffer.Start);
                Interlocked.Increment(ref _held);
                break;
            }

            // Canceled by a release that came before the body was whole (the probe's wait gave up): go on unheld.
            if (result.IsCanceled || result.IsCompleted)
            {
                body.AdvanceTo(result.Buffer.Start);
                break;
            }

            // Examined, not consumed: the next read waits for more of the body, and what came stays in the pipe.
            body.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }

        await _release.WaitAsync(cancellation);
    }

    /// <summary>Waits up to <paramref name="within"/> for <paramref name="count"/> uploads to be held; the uploads held then.</summary>
    public async Task<int> WaitUntilHeldAsync(int count, TimeSpan within)
    {
        var elapsed = Stopwatch.StartNew();
        int held;
        while ((held = Held) < count && elapsed.Elapsed < within)
        {
            await Task.Delay(20);
        }

        return held;
    }

    /// <summary>Lets <paramref name="count"/> held uploads go on; an upload still waiting for its body stops waiting.</summary>
    public void Release(int count)
    {
        if (Held < count)
        {
            foreach (PipeReader reader in _readers)
            {
                reader.CancelPendingRead();
            }
        }

        _release.Release(count);
    }

    public void Dispose() => _release.Dispose();
}
