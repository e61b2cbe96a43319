using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The idle release dates a class's last activity by a running figure of its rents, returns and the blocks parked by
/// the threads' segmented buffers. A thread that exits takes its parks out of that figure: the figure must still never
/// come back to a value already seen while the class was used, or the activity that brought it back is missed and a
/// block returned a moment ago is unmapped as if it had been idle a whole delay.
/// </summary>
/// <remarks>Alone: reads /proc/self/maps for a slab's unmapping, which another test's new slab could fill.</remarks>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class SegmentedExitedThreadActivityTests
{
    // Several counts of parks, so that one of them brings the figure back exactly whatever each step adds to it (today
    // two: a parked block also counts as a return, so two parks balance the rent and return made here).
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void ABlockReturnedWhileAThreadThatParkedBlocksExitsStaysMappedForTheWholeDelay(int messages)
    {
        Skip.Unless(ProcessMappings.CanRead, "reads /proc/self/maps, which only Linux has");
        var time = new FakeTimeProvider();
        using var pool = ParkedBlocks.NewPool(time);
        var options = new SegmentedBufferOptions { Pool = pool };
        using var parked = new ManualResetEventSlim();
        using var exit = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            for (int i = 0; i < messages; i++)
            {
                _ = ParkedBlocks.WriteMessage(options, (byte)i);
            }

            parked.Set();
            exit.Wait();
        });
        thread.Start();
        parked.Wait();

        // The idle clock sees the thread's messages at its first tick, then nothing until a whole delay has almost passed.
        SafetyCases.Advance(time, SafetyCases.IdleDelay);

        // Now the thread exits (its parks leave the figure), and a block of the same class is rented and returned here.
        exit.Set();
        thread.Join();
        nint returned;
        using (IMemoryOwner<byte> owner = pool.Rent(4096))
        {
            owner.Memory.Span.Fill(1);
            returned = OwnerAddress.Of(owner);
        }

        // Returned a quarter delay ago, then half a delay ago: its slab must still be mapped (a late write lands).
        for (int quarter = 1; quarter <= 2; quarter++)
        {
            SafetyCases.Advance(time, SafetyCases.IdleDelay / 4);
            Thread.Sleep(10);
            Assert.True(ProcessMappings.IsMapped(returned, 4096), $"a block returned {quarter} quarter delay(s) ago was unmapped ({messages} parks left with their exited thread): {ProcessMappings.Describe(returned, 4096)}");
        }
    }
}
