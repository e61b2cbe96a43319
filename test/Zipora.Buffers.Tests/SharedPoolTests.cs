using System.Buffers;

namespace Zipora.Buffers.Tests;

public sealed class SharedPoolTests
{
    [Fact]
    public void DisposingTheSharedPoolDoesNothing()
    {
        TieredMemoryPool.Shared.Dispose();
        using IMemoryOwner<byte> owner = TieredMemoryPool.Shared.Rent(100);
        owner.Memory.Span.Fill(1);
        Assert.Same(TieredMemoryPool.Shared, TieredMemoryPool.Shared);
    }
}
