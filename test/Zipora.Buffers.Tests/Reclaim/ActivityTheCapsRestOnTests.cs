using System.Linq;
using Microsoft.Extensions.Time.Testing;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A rent at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/> trims the pool, and the next refusal trims again only
/// if the pool's activity (rents and returns, read without allocating) moved since; the retained cap rests the same way.
/// The rest takes an equal figure for no change, so the figure must only grow. The medium tier counted a thread's
/// parked block (a segmented buffer's last block, kept for its next message) as a return while it stayed parked, so the
/// figure fell by one when the thread took the block back: taken back while a cap's trim ran, with a block returned
/// behind that trim, the figure came back to what the cap's trim had read, and every later refusal rested with the
/// returned block cached. Each park now counts once, for good.
/// </summary>
[Collection(nameof(SegmentedParkedBlockSafetyTests))]
public sealed class ActivityTheCapsRestOnTests
{
    [Fact]
    public void AThreadTakingBackItsParkedBlockNeverLowersTheActivityTheCapsRestOn()
    {
        using TieredMemoryPool pool = ParkedBlocks.NewPool(new FakeTimeProvider());
        var options = new SegmentedBufferOptions { Pool = pool };
        _ = ParkedBlocks.WriteMessage(options, 1);
        Assert.True(CachedMediumBlocks(pool) >= 1, $"the message parked no block\n{pool.GetStatistics()}");
        long parked = pool.RetainedAndActivity().Activity;

        // The next message takes the parked block back: nothing is rented, nothing is returned.
        long rents = pool.GetStatistics().Medium.Rents;
        using (var writer = new SegmentedBufferWriter(options))
        {
            Assert.Equal(4096, pool.GetStatistics().Segmented.BytesHeld);
            long takenBack = pool.RetainedAndActivity().Activity;
            Assert.True(takenBack >= parked, $"taking the parked block back lowered the activity from {parked} to {takenBack}");

            // A block returned now is activity, whatever came before it.
            pool.Rent(4096).Dispose();
            long returned = pool.RetainedAndActivity().Activity;
            Assert.True(returned > takenBack, $"a rent and a return left the activity at {returned} (was {takenBack})");
        }

        // Parked again at the writer's end: more activity, never less.
        long parkedAgain = pool.RetainedAndActivity().Activity;
        Assert.True(parkedAgain > parked, $"a second message's park left the activity at {parkedAgain} (first park {parked})");
        Assert.Equal(rents + 1, pool.GetStatistics().Medium.Rents);
    }

    private static long CachedMediumBlocks(TieredMemoryPool pool) =>
        pool.GetStatistics().SizeHistogram.First(static row => row is { Tier: "medium", ClassSize: 4096 }).Cached;
}
