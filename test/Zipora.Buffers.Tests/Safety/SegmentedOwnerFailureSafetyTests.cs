using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Threading;

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
            var pool = new RefusingPool(static index => index % 2 == 0, () => HeapFiller.Fill(filler, largest: 1 << 20, smallest: 24));
            var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = SegmentSize, MaxSegmentSize = SegmentSize };

            // The path compiled on a fresh thread first, with room, so only the heap limit differs.
            Exception? withRoom = HeapFiller.ThrownOnAFreshThread(withRoom: null, create(options).Dispose, filler: null);
            if (withRoom is not AggregateException { InnerExceptions.Count: Segments / 2 })
            {
                failures.Add($"{name} with room: threw {withRoom?.GetType().Name ?? "nothing"} ({withRoom?.Message}), not the {Segments / 2} owners' errors together");
            }

            int outstandingBefore = pool.Outstanding;
            IDisposable buffer = create(options);
            pool.FillsTheHeapAtEachRefusal = true;
            Exception? atTheLimit = HeapFiller.ThrownOnAFreshThread(withRoom: null, buffer.Dispose, filler);
            pool.FillsTheHeapAtEachRefusal = false;
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

    /// <summary>
    /// Another pool: managed arrays, counted out and back; the owners <c>refuses</c> picks throw on dispose, after
    /// filling the heap while <see cref="FillsTheHeapAtEachRefusal"/>.
    /// </summary>
    private sealed class RefusingPool(Func<int, bool> refuses, Action fillTheHeap) : MemoryPool<byte>
    {
        private int _rents;
        private int _outstanding;
        private int _doubleDisposes;

        public int Outstanding => Volatile.Read(ref _outstanding);

        /// <summary>Owners disposed a second time: a segment given back twice.</summary>
        public int DoubleDisposes => Volatile.Read(ref _doubleDisposes);

        public bool FillsTheHeapAtEachRefusal { get; set; }

        public void BeforeRefusal()
        {
            if (FillsTheHeapAtEachRefusal)
            {
                fillTheHeap();
            }
        }

        public override int MaxBufferSize => 1 << 20;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            int index = _rents++;
            Interlocked.Increment(ref _outstanding);
            return new Owner(this, new byte[Math.Max(minBufferSize, 1)], refuses(index % Segments) ? new IOException($"Owner {index} refuses to be disposed.") : null);
        }

        protected override void Dispose(bool disposing)
        {
        }

        /// <summary>Its exception is made with it: one made at the heap limit would be the runtime's out-of-memory instead.</summary>
        private sealed class Owner(RefusingPool pool, byte[] array, Exception? refusal) : IMemoryOwner<byte>
        {
            private int _disposed;

            public Memory<byte> Memory => array;

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) != 0)
                {
                    Interlocked.Increment(ref pool._doubleDisposes);
                    return;
                }

                if (refusal is not null)
                {
                    pool.BeforeRefusal();
                    throw refusal;
                }

                Interlocked.Decrement(ref pool._outstanding);
            }
        }
    }
}
