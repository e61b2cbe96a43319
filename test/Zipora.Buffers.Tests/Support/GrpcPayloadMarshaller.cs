using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO;
using System.Threading;
using Grpc.Core;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Writes <see cref="GrpcPayload"/>s straight into the transport's buffer writer and reads them straight from the
/// received sequence (on the server, both are Kestrel's buffers from the pool), checking every byte as it goes.
/// </summary>
public sealed class GrpcPayloadMarshaller
{
    // Odd, so the writes straddle the pool's block boundaries at ever-different offsets.
    private const int ChunkHint = 7_777;
    private long _corruptions;
    private long _bytesChecked;

    /// <summary>The gRPC marshaller over this instance.</summary>
    public Marshaller<GrpcPayload> Marshaller => Marshallers.Create<GrpcPayload>(Serialize, Deserialize);

    /// <summary>Messages received with a byte that was not the one sent, at either end, whether or not the call then failed.</summary>
    public long Corruptions => Interlocked.Read(ref _corruptions);

    /// <summary>Bytes received and checked, at either end.</summary>
    public long BytesChecked => Interlocked.Read(ref _bytesChecked);

    private static void Serialize(GrpcPayload payload, SerializationContext context)
    {
        context.SetPayloadLength(payload.WireLength);
        IBufferWriter<byte> writer = context.GetBufferWriter();
        if (payload != GrpcPayload.Empty)
        {
            BinaryPrimitives.WriteInt32LittleEndian(writer.GetSpan(sizeof(int)), payload.Seed);
            writer.Advance(sizeof(int));
            for (int position = 0; position < payload.Length;)
            {
                Span<byte> span = writer.GetSpan(Math.Min(ChunkHint, payload.Length - position));
                int count = Math.Min(span.Length, payload.Length - position);
                for (int i = 0; i < count; i++)
                {
                    span[i] = GrpcPayload.Stamp(payload.Seed, position + i);
                }

                writer.Advance(count);
                position += count;
            }
        }

        context.Complete();
    }

    private GrpcPayload Deserialize(DeserializationContext context)
    {
        ReadOnlySequence<byte> message = context.PayloadAsReadOnlySequence();
        if (message.IsEmpty)
        {
            return GrpcPayload.Empty;
        }

        if (message.Length < sizeof(int))
        {
            Interlocked.Increment(ref _corruptions);
            throw new InvalidDataException($"A message of {message.Length} bytes has no seed.");
        }

        Span<byte> seedBytes = stackalloc byte[sizeof(int)];
        message.Slice(0, sizeof(int)).CopyTo(seedBytes);
        int seed = BinaryPrimitives.ReadInt32LittleEndian(seedBytes);
        long position = 0;
        foreach (ReadOnlyMemory<byte> segment in message.Slice(sizeof(int)))
        {
            ReadOnlySpan<byte> span = segment.Span;
            for (int i = 0; i < span.Length; i++)
            {
                if (span[i] != GrpcPayload.Stamp(seed, position + i))
                {
                    Interlocked.Increment(ref _corruptions);
                    throw new InvalidDataException($"Byte {position + i} of a message seeded {seed} ({message.Length} bytes) is {span[i]}, not {GrpcPayload.Stamp(seed, position + i)}.");
                }
            }

            position += span.Length;
        }

        Interlocked.Add(ref _bytesChecked, message.Length);
        return new GrpcPayload(seed, checked((int)position));
    }
}
