namespace Zipora.Buffers.Tests;

public sealed class ArraySizeClassesTests
{
    [Fact]
    public void ExactIndexOfFindsEveryClassLengthAndNoOtherLength()
    {
        // Every length up to 128 KB, then each class length and its neighbours up to the last class.
        for (int length = 1; length <= 1 << 17; length++)
        {
            Assert.Equal(Expected(length), ArraySizeClasses.ExactIndexOf(length));
        }

        for (int index = 0; index < ArraySizeClasses.Count; index++)
        {
            int length = ArraySizeClasses.LengthOf(index);
            Assert.Equal(index, ArraySizeClasses.ExactIndexOf(length));
            Assert.Equal(-1, ArraySizeClasses.ExactIndexOf(length - 1));
            if (length < ArraySizeClasses.MaxLength)
            {
                Assert.Equal(-1, ArraySizeClasses.ExactIndexOf(length + 1));
            }
        }
    }

    private static int Expected(int length)
    {
        int index = ArraySizeClasses.IndexOf(length);
        return ArraySizeClasses.LengthOf(index) == length ? index : -1;
    }
}
