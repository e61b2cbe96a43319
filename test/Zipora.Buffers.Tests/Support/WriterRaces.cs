using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Races a writer's read-only call (<c>GetSpan</c>, <c>GetReadOnlySequence</c>) against what may change the writer
/// under it: a dispose from another thread, or (misuse) writes, consumes and resets from another thread. Each race
/// fails the test on any exception but the documented ones, and leaves the pool to be checked for balance.
/// </summary>
internal static class WriterRaces
{
    /// <summary>
    /// <paramref name="rounds"/> writers prepared by <paramref name="prepare"/>, each read in a loop on one thread by
    /// <paramref name="read"/> while this thread disposes it at a later moment each round; returns how many reads met
    /// the dispose (<see cref="ObjectDisposedException"/>, the only exception allowed).
    /// </summary>
    public static int ReadAgainstADispose(SegmentedBufferOptions options, Action<SegmentedBufferWriter> prepare, Action<SegmentedBufferWriter> read, int rounds = 300)
    {
        int disposedSeen = 0;
        for (int round = 0; round < rounds; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            prepare(writer);
            using var start = new Barrier(2);
            Exception? unexpected = null;
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    for (int i = 0; i < 10_000; i++)
                    {
                        read(writer);
                    }
                }
                catch (ObjectDisposedException)
                {
                    Interlocked.Increment(ref disposedSeen);
                }
                catch (Exception exception)
                {
                    unexpected = exception;
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(round * 20);
            writer.Dispose();
            user.Join();
            Assert.Null(unexpected);
            Assert.Throws<ObjectDisposedException>(() => read(writer));
        }

        Assert.True(disposedSeen > 0, "no read ever met the dispose: the race was not exercised");
        return disposedSeen;
    }

    /// <summary>
    /// Misuse: <paramref name="read"/> in a loop on one thread while this one writes, consumes and resets the same
    /// writer, 50 writers in turn. A thread that meets the other inside a call is told so ("two threads"), which both
    /// sides may be; returns how many reads were told.
    /// </summary>
    public static int ReadAgainstRewrites(SegmentedBufferOptions options, Action<SegmentedBufferWriter> read)
    {
        Exception? unexpected = null;
        int told = 0;
        for (int round = 0; round < 50; round++)
        {
            var writer = new SegmentedBufferWriter(options);
            using var start = new Barrier(2);
            using var stop = new CancellationTokenSource();
            Thread reader = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        read(writer);
                    }
                    catch (InvalidOperationException exception) when (IsToldOfTheOtherThread(exception))
                    {
                        Interlocked.Increment(ref told);
                    }
                    catch (Exception exception)
                    {
                        unexpected ??= exception;
                    }
                }
            });
            start.SignalAndWait();
            for (int i = 0; i < 2000; i++)
            {
                try
                {
                    writer.Write(new byte[1 + (i * 37 % 700)]);
                    if (i % 3 == 0)
                    {
                        writer.Consume(writer.Length / 2);
                    }
                    else if (i % 7 == 0)
                    {
                        writer.Reset();
                    }
                }
                catch (InvalidOperationException exception) when (IsToldOfTheOtherThread(exception))
                {
                    // This thread met the other inside its guarded call.
                }
            }

            stop.Cancel();
            reader.Join();
            writer.Dispose();
        }

        Assert.Null(unexpected);
        return told;
    }

    private static bool IsToldOfTheOtherThread(InvalidOperationException exception) => exception.Message.Contains("two threads", StringComparison.Ordinal);
}
