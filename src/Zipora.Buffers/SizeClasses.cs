using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// Size class arithmetic. Above a power of two the classes step by a quarter of it (four per doubling, as jemalloc
/// does), which bounds the rounding waste at 25% of the request with no table lookups.
/// </summary>
internal static class SizeClasses
{
    /// <summary>The index, counted from the doubling that starts at 2^<paramref name="baseLog2"/>, of the quarter-step class that holds <paramref name="size"/>.</summary>
    /// <remarks>Inlined: the small and region tiers' fast paths start with it.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int QuarterStepIndex(int size, int baseLog2)
    {
        Debug.Assert(size > 1 << baseLog2, "quarter-step classes start above their base");
        uint last = (uint)size - 1;
        return QuarterStepIndex(last, BitOperations.LeadingZeroCount(last), baseLog2);
    }

    /// <summary>
    /// <see cref="QuarterStepIndex(int, int)"/> of the size <paramref name="last"/> + 1, given the count of leading
    /// zeros of <paramref name="last"/>, for a caller that needs that count for something else too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int QuarterStepIndex(uint last, int zeros, int baseLog2)
    {
        // size - 1 shifted up until its leading one is bit 31: bits 31-29 are then 4 plus the quarter, and its doubling
        // (31 - zeros - baseLog2) counts four classes each. Two dependent instructions after the count of zeros, where
        // shifting down by the doubling took four; a rent and a return each pay it.
        int leadingThree = (int)((last << zeros) >> 29);
        return leadingThree + (4 * (30 - baseLog2 - zeros));
    }

    /// <summary>The size of quarter-step class <paramref name="index"/> above 2^<paramref name="baseLog2"/>.</summary>
    public static long QuarterStepSize(int index, int baseLog2)
    {
        int log2 = baseLog2 + (index >> 2);
        int quarter = index & 3;
        return (1L << log2) + ((quarter + 1L) << (log2 - 2));
    }

    /// <summary>The smallest quarter-step class that holds <paramref name="size"/>.</summary>
    public static long QuarterStepRound(int size, int baseLog2) => QuarterStepSize(QuarterStepIndex(size, baseLog2), baseLog2);
}
