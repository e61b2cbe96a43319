using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A segmented buffer on another pool whose owners throw on dispose gives every other segment back and then throws
/// their errors. At the GC heap limit the list that gathers them could not be made: the second error threw out of the
/// release loop, and every segment after it stayed held for good. The first error is now kept without allocating, and
/// later ones that find no memory are counted.
/// </summary>
[Collection(HeapFiller.AtTheHeapLimit)]
public sealed class SegmentedOwnerFailureSafetyTests
{
    private const int Segments = 12;
    private const int SegmentSize = 1024;

    [Fact]
    public void OwnersThatThrowOnDisposeAtTheHeapLimitStrandNoOtherSegment()
    {
        if (IsolatedProcess.RunsElsewhereAtHeapLimit(typeof(SegmentedOwnerFailureSafetyTests), nameof(OwnersThatThrowOnDisposeAtTheHeapLimitStrandNoOtherSegment)))
        {
            return;
        }

        var failures = new List<string>();
        var filler = new List<byte[]>(400_000);
        var cases = new (string Name, Func<SegmentedBufferOptions, IDisposable> Create)[]
        {
            ("a writer's dispose", static options => Written(new SegmentedBufferWriter(options))),
            ("a stream's dispose", static options => Written(new SegmentedMemoryStream(options))),
        };

        foreach ((string name, Func<SegmentedBufferOptions, IDisposable> create) in cases)
        {
            // Every other owner refuses: six errors, the first kept, the next five each needing the list. At the limit,
            // each refusal first fills what the heap has left, so every error is caught with the heap full.
            var pool = new MisbehavingPool
            {
                Refuses = static index => index % Segments % 2 == 0,
                Refusal = static index => new IOException($"Owner {index} refuses to be disposed."),
            };
            var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize };

            // The path compiled on a fresh thread first, with room, so only the heap limit differs.
            Exception? withRoom = HeapFiller.ThrownOnAFreshThread(withRoom: null, create(options).Dispose, filler: null);
            if (withRoom is not AggregateException { InnerExceptions.Count: Segments / 2 })
            {
                failures.Add($"{name} with room: threw {withRoom?.GetType().Name ?? "nothing"} ({withRoom?.Message}), not the {Segments / 2} owners' errors together");
            }

            int outstandingBefore = pool.Outstanding;
            IDisposable buffer = create(options);
            pool.BeforeRefusal = () => HeapFiller.Fill(filler, largest: 1 << 20, smallest: 24);
            Exception? atTheLimit = HeapFiller.ThrownOnAFreshThread(withRoom: null, buffer.Dispose, filler);
            pool.BeforeRefusal = null;
            filler.Clear();
            GC.Collect();

            // Only the owners that refused are still out: each of the others was given back once.
            int stranded = pool.Outstanding - outstandingBefore - (Segments / 2);
            if (stranded != 0)
            {
                failures.Add($"{name} at the heap limit: {stranded} segments that did not refuse were never given back (the dispose threw {atTheLimit?.GetType().Name}: {atTheLimit?.Message})");
            }

            if (atTheLimit is null)
            {
                failures.Add($"{name} at the heap limit: threw nothing, though {Segments / 2} owners refused");
            }

            // A second dispose finds nothing left to give back and throws nothing.
            Exception? again = Record.Exception(buffer.Dispose);
            if (again is not null)
            {
                failures.Add($"{name}: a second dispose threw {again.GetType().Name}");
            }

            if (pool.DoubleDisposes != 0)
            {
                failures.Add($"{name}: {pool.DoubleDisposes} owners were disposed twice");
            }
        }

        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    private static SegmentedBufferWriter Written(SegmentedBufferWriter writer)
    {
        writer.Write(new byte[Segments * SegmentSize]);
        return writer;
    }

    private static SegmentedMemoryStream Written(SegmentedMemoryStream stream)
    {
        stream.Write(new byte[Segments * SegmentSize]);
        return stream;
    }
}
