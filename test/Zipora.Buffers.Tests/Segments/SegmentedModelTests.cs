using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using CsCheck;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Random sequences of operations on small segments (16 to 64 bytes, so every operation crosses boundaries), checked
/// against models: the stream against <see cref="MemoryStream"/> (contents, length, position, every read and every
/// exception type alike), the writer against a <see cref="List{T}"/> of the bytes not yet consumed.
/// </summary>
public sealed class SegmentedModelTests
{
    private static readonly Gen<byte[]> s_data = Gen.Byte.Array[0, 150];

    [Fact]
    public void TheStreamBehavesLikeMemoryStream()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64 };

        GenOperation<StreamRun, StreamRun>[] operations =
        [
            s_data.Operation<StreamRun, StreamRun>(data => $"Write({data.Length})", (actual, data) => actual.Do(s => s.Write(data)), (model, data) => model.Do(s => s.Write(data))),
            Gen.Byte.Operation<StreamRun, StreamRun>(value => $"WriteByte({value})", (actual, value) => actual.Do(s => s.WriteByte(value)), (model, value) => model.Do(s => s.WriteByte(value))),
            Gen.Int[0, 150].Operation<StreamRun, StreamRun>(count => $"Read({count})", (actual, count) => actual.Read(count), (model, count) => model.Read(count)),
            Gen.Const(0).Operation<StreamRun, StreamRun>(_ => "ReadByte()", (actual, _) => actual.Do(s => actual.Log.Add(s.ReadByte())), (model, _) => model.Do(s => model.Log.Add(s.ReadByte()))),
            Gen.Select(Gen.Long[-200, 400], Gen.Int[0, 2]).Operation<StreamRun, StreamRun>(
                seek => $"Seek({seek.Item1}, {(SeekOrigin)seek.Item2})",
                (actual, seek) => actual.Do(s => actual.Log.Add(s.Seek(seek.Item1, (SeekOrigin)seek.Item2))),
                (model, seek) => model.Do(s => model.Log.Add(s.Seek(seek.Item1, (SeekOrigin)seek.Item2)))),
            Gen.Long[-5, 400].Operation<StreamRun, StreamRun>(length => $"SetLength({length})", (actual, length) => actual.Do(s => s.SetLength(length)), (model, length) => model.Do(s => s.SetLength(length))),
            Gen.Long[-5, 400].Operation<StreamRun, StreamRun>(position => $"Position = {position}", (actual, position) => actual.Do(s => s.Position = position), (model, position) => model.Do(s => s.Position = position)),
            Gen.Const(0).Operation<StreamRun, StreamRun>(_ => "CopyTo()", (actual, _) => actual.CopyOut(), (model, _) => model.CopyOut()),

            // Emptied as a reused stream is, between messages: the kept first segment must behave as MemoryStream's capacity.
            Gen.Const(0).Operation<StreamRun, StreamRun>(_ => "SetLength(0)", (actual, _) => actual.Do(s => s.SetLength(0)), (model, _) => model.Do(s => s.SetLength(0))),
        ];

        Check.SampleModelBased(
            Gen.Const(0).Select(_ => (new StreamRun(new SegmentedMemoryStream(options)), new StreamRun(new MemoryStream()))),
            operations,
            static (actual, model) => actual.Matches(model),
            iter: 300);
    }

    [Fact]
    public void TheWriterBehavesLikeAListOfTheBytesNotYetConsumed()
    {
        using var pool = new TieredMemoryPool();
        var options = new SegmentedBufferOptions { Pool = pool, InitialSegmentSize = 16, MaxSegmentSize = 64 };

        GenOperation<SegmentedBufferWriter, List<byte>>[] operations =
        [
            Gen.Select(s_data, Gen.Int[0, 200]).Operation<SegmentedBufferWriter, List<byte>>(
                write => $"GetSpan({write.Item2}) <- {write.Item1.Length}",
                (actual, write) =>
                {
                    // As a serializer writes: ask with a hint, fill part of what was given, advance, ask again.
                    ReadOnlySpan<byte> rest = write.Item1;
                    while (!rest.IsEmpty)
                    {
                        Span<byte> span = actual.GetSpan(write.Item2);
                        Assert.True(span.Length >= Math.Max(write.Item2, 1));
                        int count = Math.Min(span.Length, rest.Length);
                        rest[..count].CopyTo(span);
                        actual.Advance(count);
                        rest = rest[count..];
                    }
                },
                (model, write) => model.AddRange(write.Item1)),
            Gen.Int[0, 1000].Operation<SegmentedBufferWriter, List<byte>>(
                share => $"Consume({share}‰)",
                (actual, share) => actual.Consume(actual.Length * share / 1000),
                (model, share) => model.RemoveRange(0, model.Count * share / 1000)),
            Gen.Int[0, 1000].Operation<SegmentedBufferWriter, List<byte>>(
                share => $"AdvanceTo({share}‰)",
                (actual, share) => actual.AdvanceTo(actual.GetReadOnlySequence().GetPosition(actual.Length * share / 1000)),
                (model, share) => model.RemoveRange(0, model.Count * share / 1000)),
            Gen.Int[1, 20].Operation<SegmentedBufferWriter, List<byte>>(
                _ => "Reset()",
                (actual, _) => actual.Reset(),
                (model, _) => model.Clear()),
        ];

        Check.SampleModelBased(
            Gen.Const(0).Select(_ => (new SegmentedBufferWriter(options), new List<byte>())),
            operations,
            static (actual, model) =>
            {
                bool same = actual.Length == model.Count && actual.ToArray().AsSpan().SequenceEqual(model.ToArray()) && actual.GetReadOnlySequence().Length == model.Count;
                return same;
            },
            iter: 300);
    }

    /// <summary>A stream and what its reads, seeks and copies returned, and the exceptions it threw, in order.</summary>
    private sealed class StreamRun(Stream stream)
    {
        public Stream Stream { get; } = stream;

        public List<object> Log { get; } = [];

        public void Do(Action<Stream> operation)
        {
            try
            {
                operation(Stream);
            }
            catch (Exception exception) when (exception is IOException or ArgumentException)
            {
                // Part of the behaviour compared: MemoryStream must throw the same type at the same step.
                Log.Add(exception.GetType().Name);
            }
        }

        public void Read(int count)
        {
            byte[] buffer = new byte[count];
            int read = Stream.Read(buffer);
            Log.Add(Convert.ToHexString(buffer, 0, read));
        }

        public void CopyOut()
        {
            using var destination = new MemoryStream();
            Stream.CopyTo(destination);
            Log.Add(Convert.ToHexString(destination.ToArray()));
        }

        public bool Matches(StreamRun model)
        {
            byte[] contents = Stream is SegmentedMemoryStream segmented ? segmented.ToArray() : ((MemoryStream)Stream).ToArray();
            return contents.AsSpan().SequenceEqual(((MemoryStream)model.Stream).ToArray())
                && Stream.Length == model.Stream.Length
                && Stream.Position == model.Stream.Position
                && Log.SequenceEqual(model.Log);
        }

        public override string ToString() => $"length {Stream.Length}, position {Stream.Position}, log {string.Join(", ", Log)}";
    }
}
