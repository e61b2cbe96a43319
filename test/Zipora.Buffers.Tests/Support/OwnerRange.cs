using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Zipora.Buffers.Tests;

/// <summary>Where an owner's memory was: its first byte and length.</summary>
public readonly record struct OwnerRange(nint Start, int Length)
{
    public nint End => Start + Length;

    public bool Overlaps(OwnerRange other) => Start < other.End && other.Start < End;

    public bool Overlaps(IEnumerable<OwnerRange> others) => others.Any(Overlaps);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"[0x{Start:x}, 0x{End:x}) ({Length} bytes)");
}
