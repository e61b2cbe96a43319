using System.Buffers;
using System.Collections.Generic;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The README's promise for a disposed pool, measured from outside with the default delay of 10 s: memory returned
/// less than a delay ago has its pages dropped at the dispose (resident memory falls at once) and only its address
/// space waits out the delay; a buffer still out at the dispose drops its pages when it comes back.
/// </summary>
/// <remarks>Measures the process's resident memory, so it runs alone.</remarks>
[Collection(nameof(HugepageTests))]
public sealed class ResidentMemoryFallsAtProviderDisposeTests
{
    private const int Buffers = 16;
    private static readonly int[] s_sizes = [12_000, 1024 * 1024, 4 * 1024 * 1024];
    private static readonly long s_bytes = Buffers * (12_000L + (1024 * 1024) + (4 * 1024 * 1024));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ResidentMemoryFallsAtTheDisposeOrTheLateReturnNotADelayLater(bool returnedAfterTheDispose)
    {
        Assert.SkipUnless(ProcessMemory.CanRead, "reads /proc/self/statm");
        ServiceProvider provider = new ServiceCollection().AddTieredMemoryPool(static options => options.UsePinnedArrays = false).BuildServiceProvider();
        MemoryPool<byte> view = provider.GetRequiredService<IMemoryPoolFactory<byte>>().Create(new MemoryPoolOptions { Owner = "kestrel" });
        long before = ProcessMemory.SettledResidentBytes();
        var rented = new List<IMemoryOwner<byte>>();
        foreach (int size in s_sizes)
        {
            for (int i = 0; i < Buffers; i++)
            {
                IMemoryOwner<byte> owner = view.Rent(size);
                owner.Memory.Span.Fill(0x5a);
                rented.Add(owner);
            }
        }

        long touched = ProcessMemory.ResidentBytes() - before;
        if (!returnedAfterTheDispose)
        {
            rented.ForEach(static owner => owner.Dispose());
        }

        provider.Dispose();
        if (returnedAfterTheDispose)
        {
            rented.ForEach(static owner => owner.Dispose());
        }

        long left = ProcessMemory.ResidentBytes() - before;
        TestContext.Current.SendDiagnosticMessage($"{s_bytes >> 20} MB rented: resident +{touched >> 20} MB touched, +{left >> 20} MB right after the dispose and the returns");
        Assert.InRange(touched, s_bytes * 3 / 4, long.MaxValue);

        // An eighth of what was touched: the runtime's own allocations move resident memory by a few megabytes.
        Assert.InRange(left, long.MinValue, s_bytes / 8);
    }
}
