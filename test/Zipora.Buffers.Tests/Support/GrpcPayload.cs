using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A gRPC message of the end-to-end tests: a seed and a length, sent as the seed's four bytes then
/// <see cref="Length"/> bytes stamped from it, so a byte from the wrong place or another buffer is caught where it is read.
/// The empty payload (no seed, no bytes) is sent as a message of 0 bytes.
/// </summary>
public sealed record GrpcPayload(int Seed, int Length)
{
    /// <summary>The message of 0 bytes.</summary>
    public static GrpcPayload Empty { get; } = new(0, 0);

    /// <summary>The bytes this payload takes on the wire.</summary>
    public int WireLength => this == Empty ? 0 : sizeof(int) + Length;

    /// <summary>The byte at <paramref name="position"/> of the stamped part of a payload seeded <paramref name="seed"/>.</summary>
    public static byte Stamp(int seed, long position) => (byte)(PositionPattern.Expected(position) + (seed * 131) + (seed >> 8));

    /// <summary>The answer the echo service gives to this payload: same length, a different seed.</summary>
    public GrpcPayload Answer() => this == Empty ? Empty : new(Seed ^ 0x5A5A_5A5A, Length);

    /// <summary>A payload of <paramref name="wireLength"/> bytes on the wire (0, or at least the seed's 4).</summary>
    public static GrpcPayload OfWireLength(int seed, int wireLength) =>
        wireLength == 0 ? Empty : new(seed, Math.Max(0, wireLength - sizeof(int)));
}
