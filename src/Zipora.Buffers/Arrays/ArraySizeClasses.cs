using System.Numerics;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers;

/// <summary>
/// The array lengths <see cref="TieredArrayPool"/> hands out: powers of two from 16 to 4096 bytes, then four classes
/// per doubling (5, 6, 7, 8 KB, 10, 12, 14, 16 KB, ...), so rounding wastes at most 25% above 4 KB where the runtime's
/// pool, rounding to powers of two, wastes up to 50%.
/// </summary>
internal static class ArraySizeClasses
{
    /// <summary>The shortest class: the runtime's pool starts there too.</summary>
    public const int MinLength = 16;

    /// <summary>The longest class: 1 GiB, the runtime pool's limit as well.</summary>
    public const int MaxLength = 1 << 30;

    /// <summary>How many classes there are up to <see cref="MaxLength"/>: 9 powers of two, then 4 per doubling from 4 KB to 1 GiB.</summary>
    public const int Count = PowerOfTwoClasses + ((30 - QuarterStepBaseLog2) * 4);

    private const int MinLengthLog2 = 4;
    private const int QuarterStepBaseLog2 = 12;
    private const int PowerOfTwoClasses = QuarterStepBaseLog2 - MinLengthLog2 + 1;

    /// <summary>The class that holds <paramref name="length"/> (from 1 to <see cref="MaxLength"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int IndexOf(int length)
    {
        if (length <= 1 << QuarterStepBaseLog2)
        {
            return PowerOfTwoIndexOf(length);
        }

        return PowerOfTwoClasses + SizeClasses.QuarterStepIndex(length, QuarterStepBaseLog2);
    }

    /// <summary>The class whose length is exactly <paramref name="length"/> (from 1 to <see cref="MaxLength"/>), or -1 when none is.</summary>
    /// <remarks>Computed along with the index, not looked up: a table load here costs the return path about a nanosecond.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ExactIndexOf(int length)
    {
        if (length <= 1 << QuarterStepBaseLog2)
        {
            int index = PowerOfTwoIndexOf(length);
            return MinLength << index == length ? index : -1;
        }

        // Above 4 KB a class length is 5, 6, 7 or 8 quarters of the power of two below length - 1: a multiple of the
        // quarter, 2^(29 - zeros), so the bits under it are 0x1FFFFFFF >> zeros; the count of zeros the index needs
        // gives that mask too, and the check runs beside the index (see SizeClasses.QuarterStepIndex).
        uint last = (uint)length - 1;
        int zeros = BitOperations.LeadingZeroCount(last);
        if ((length & (0x1FFF_FFFF >> zeros)) != 0)
        {
            return -1;
        }

        return PowerOfTwoClasses + SizeClasses.QuarterStepIndex(last, zeros, QuarterStepBaseLog2);
    }

    /// <summary>The length of the arrays of class <paramref name="index"/>.</summary>
    public static int LengthOf(int index) =>
        index < PowerOfTwoClasses ? MinLength << index : (int)SizeClasses.QuarterStepSize(index - PowerOfTwoClasses, QuarterStepBaseLog2);

    /// <summary>The power-of-two class that holds <paramref name="length"/> (from 1 to 4096).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PowerOfTwoIndexOf(int length) =>
        // The OR lifts lengths under 16 into the first class without a branch.
        BitOperations.Log2((uint)(length - 1) | (MinLength - 1)) - (MinLengthLog2 - 1);
}
