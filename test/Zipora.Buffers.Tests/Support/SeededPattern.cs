using System;

namespace Zipora.Buffers.Tests;

/// <summary>
/// <see cref="PositionPattern"/> for many streams at once: stream <c>seed</c> starts at its own far offset of the
/// pattern, so a block that carried another stream's bytes (given to two owners) is caught where it is read back.
/// </summary>
internal static class SeededPattern
{
    private static long Start(int seed) => (long)seed * 1_000_003_077;

    public static void Fill(Span<byte> span, int seed, long position) => PositionPattern.Fill(span, Start(seed) + position);

    public static bool Matches(ReadOnlySpan<byte> span, int seed, long position) => PositionPattern.Matches(span, Start(seed) + position);
}
