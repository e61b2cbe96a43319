using System;

namespace Zipora.Buffers.Tests;

/// <summary>The quarter-step class arithmetic the small, region and huge tiers route every rent and return by.</summary>
public sealed class SizeClassesTests
{
    /// <summary>Every base a tier or the array pool uses, and the ends of the range.</summary>
    public static TheoryData<int> Bases => [4, 6, 10, 12, 14, 16, 21, 24];

    [Theory]
    [MemberData(nameof(Bases))]
    public void EverySizeGetsTheSmallestQuarterStepClassThatHoldsIt(int baseLog2)
    {
        // Every size of the first four doublings (at most 2^18 of them), then each class size and its neighbours up
        // to the largest int.
        int first = (1 << baseLog2) + 1;
        for (int size = first; size <= Math.Min(first << 4, first + (1 << 18)); size++)
        {
            AssertSmallestClassHolds(size, baseLog2);
        }

        for (int index = 0; SizeClasses.QuarterStepSize(index, baseLog2) <= int.MaxValue; index++)
        {
            long classSize = SizeClasses.QuarterStepSize(index, baseLog2);
            AssertSmallestClassHolds((int)classSize, baseLog2);
            AssertSmallestClassHolds((int)classSize - 1, baseLog2);
            if (classSize < int.MaxValue)
            {
                AssertSmallestClassHolds((int)classSize + 1, baseLog2);
            }
        }

        // Past the last class that fits in an int: the 2 GiB one.
        AssertSmallestClassHolds(int.MaxValue, baseLog2);
    }

    [Fact]
    public void TheArrayPoolsClassOfEveryLengthIsTheShortestThatHoldsIt()
    {
        for (int length = 1; length <= 1 << 17; length++)
        {
            AssertShortestArrayClassHolds(length);
        }

        for (int index = 0; index < ArraySizeClasses.Count; index++)
        {
            int length = ArraySizeClasses.LengthOf(index);
            AssertShortestArrayClassHolds(length);
            AssertShortestArrayClassHolds(length - 1);
            if (length < ArraySizeClasses.MaxLength)
            {
                AssertShortestArrayClassHolds(length + 1);
            }
        }
    }

    private static void AssertSmallestClassHolds(int size, int baseLog2)
    {
        if (size <= 1 << baseLog2)
        {
            return;
        }

        int index = SizeClasses.QuarterStepIndex(size, baseLog2);
        Assert.True(SizeClasses.QuarterStepSize(index, baseLog2) >= size, $"size {size} (base 2^{baseLog2}) got class {index} of {SizeClasses.QuarterStepSize(index, baseLog2)} bytes, too small");
        Assert.True(index == 0 || SizeClasses.QuarterStepSize(index - 1, baseLog2) < size, $"size {size} (base 2^{baseLog2}) got class {index}, but class {index - 1} of {SizeClasses.QuarterStepSize(index - 1, baseLog2)} bytes holds it");
    }

    private static void AssertShortestArrayClassHolds(int length)
    {
        int index = ArraySizeClasses.IndexOf(length);
        Assert.True(ArraySizeClasses.LengthOf(index) >= length, $"length {length} got class {index} of {ArraySizeClasses.LengthOf(index)}, too short");
        Assert.True(index == 0 || ArraySizeClasses.LengthOf(index - 1) < length, $"length {length} got class {index}, but class {index - 1} of {ArraySizeClasses.LengthOf(index - 1)} holds it");
    }
}
