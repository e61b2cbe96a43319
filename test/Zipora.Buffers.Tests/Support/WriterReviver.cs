using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A user's object whose finalizer brings a segmented writer back to life, writes to it and disposes it: the writer,
/// its pool and the reviver were dropped together, so the pool's own objects (the writer's tracker and the weak
/// reference in it) are finalized in the same pass, in an order nobody chooses. The writer may refuse with
/// <see cref="ObjectDisposedException"/> (documented for a revived writer); anything else it throws is recorded here
/// (thrown out of a finalizer it would end the process).
/// </summary>
internal sealed class WriterReviver
{
    private static readonly ConcurrentQueue<Exception> s_failures = new();
    private static int s_revived;

    public SegmentedBufferWriter? Writer { get; set; }

    ~WriterReviver()
    {
        if (Writer is not { } writer)
        {
            return;
        }

        Interlocked.Increment(ref s_revived);
        try
        {
            writer.Write(new byte[100]);
        }
        catch (ObjectDisposedException)
        {
            // Documented: a revived writer whose blocks were reclaimed refuses to be used.
        }
        catch (Exception error)
        {
            s_failures.Enqueue(error);
        }

        try
        {
            writer.Dispose();
        }
        catch (Exception error)
        {
            s_failures.Enqueue(error);
        }
    }

    /// <summary>Writers revived so far.</summary>
    public static int Revived => Volatile.Read(ref s_revived);

    /// <summary>What the revived writers threw beyond the documented refusal.</summary>
    public static Exception[] Failures => s_failures.ToArray();
}
