using System;
using System.Buffers.Binary;

namespace Zipora.Buffers.KestrelSample;

/// <summary>A cheap deterministic byte stream (xorshift64), so a body can be regenerated to check it.</summary>
public sealed class PseudoRandomBytes
{
    private ulong _state;
    private readonly byte[] _carry = new byte[8];
    private int _carried;

    public PseudoRandomBytes(int seed) => _state = 0x9E3779B97F4A7C15UL ^ (ulong)(uint)seed;

    public void Fill(Span<byte> destination)
    {
        while (_carried > 0 && !destination.IsEmpty)
        {
            destination[0] = _carry[8 - _carried--];
            destination = destination[1..];
        }

        while (destination.Length >= 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(destination, Next());
            destination = destination[8..];
        }

        if (!destination.IsEmpty)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(_carry, Next());
            _carry.AsSpan(0, destination.Length).CopyTo(destination);
            _carried = 8 - destination.Length;
        }
    }

    private ulong Next()
    {
        _state ^= _state << 13;
        _state ^= _state >> 7;
        _state ^= _state << 17;
        return _state;
    }
}
