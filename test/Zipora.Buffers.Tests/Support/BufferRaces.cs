using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Races a segmented buffer's calls against what may change the buffer under them: a dispose from another thread, or
/// (misuse) writes, consumes and resets from another thread. Each race fails the test on any exception but the
/// documented ones, and leaves the pool to be checked for balance.
/// </summary>
internal static class BufferRaces
{
    /// <summary>
    /// <paramref name="rounds"/> buffers made by <paramref name="create"/>, each used on one thread by
    /// <paramref name="use"/> (until it returns, or meets the dispose) while this thread disposes it a little later
    /// each round (<paramref name="spinPerRound"/> more spins); <paramref name="afterEach"/> checks each disposed
    /// buffer. Returns how many uses met the dispose (<see cref="ObjectDisposedException"/>, the only exception allowed).
    /// </summary>
    public static int UseAgainstADispose<T>(Func<T> create, Action<T> use, int rounds, int spinPerRound, Action<T>? afterEach = null)
        where T : IDisposable
    {
        int disposedSeen = 0;
        for (int round = 0; round < rounds; round++)
        {
            T buffer = create();
            using var start = new Barrier(2);
            Exception? unexpected = null;
            Thread user = SegmentedBuffers.Started(() =>
            {
                start.SignalAndWait();
                try
                {
                    use(buffer);
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
            Thread.SpinWait(round * spinPerRound);
            buffer.Dispose();
            user.Join();
            Assert.Null(unexpected);
            afterEach?.Invoke(buffer);
        }

        return disposedSeen;
    }

    /// <summary>
    /// <paramref name="rounds"/> writers prepared by <paramref name="prepare"/>, each read 10,000 times on one thread by
    /// <paramref name="read"/> while this thread disposes it (see <see cref="UseAgainstADispose{T}"/>); a read after
    /// the dispose must throw. Returns how many reads met the dispose.
    /// </summary>
    public static int ReadAgainstADispose(SegmentedBufferOptions options, Action<SegmentedBufferWriter> prepare, Action<SegmentedBufferWriter> read, int rounds = 300)
    {
        int disposedSeen = UseAgainstADispose(
            () =>
            {
                var writer = new SegmentedBufferWriter(options);
                prepare(writer);
                return writer;
            },
            writer =>
            {
                for (int i = 0; i < 10_000; i++)
                {
                    read(writer);
                }
            },
            rounds,
            spinPerRound: 20,
            afterEach: writer => Assert.Throws<ObjectDisposedException>(() => read(writer)));
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
