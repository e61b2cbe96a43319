using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A mapping the limit refused is not served by the portable fallback, which is for mappings the OS refused. The
/// fallback reserves against the limit again, so room another thread gave back between the refusal and that look was
/// taken on the C heap's memory, whose pages are never dropped: returned, it counted against the limit for a whole
/// delay (MixedTiersAtTheCapSafetyTests, in its storms). No call lies between the refusal and the look; the page
/// source's seam at the refusal lets the room land there.
/// </summary>
public sealed class LimitRefusalFallbackTests
{
    private const nuint Length = 64 * 1024;

    [Fact]
    public void AMappingTheLimitRefusedIsNotTakenOnTheFallbackWhenRoomComesJustAfter()
    {
        var fallback = new ScriptedPageAllocator(new PortablePageAllocator());
        var pages = new PageSource(new ScriptedPageAllocator(), fallback, limit: (long)Length, lazyFree: false);
        Assert.True(pages.TryMapPlain(Length, 4096, out nint first, out PageBacking firstBacking), "the first mapping was refused");

        // Another thread's unmap lands just after the limit refused the second mapping.
        pages.AfterLimitRefusal = () => Assert.True(pages.TryUnmap(first, Length, firstBacking, counted: true), "the unmap was refused");
        bool mapped = pages.TryMapPlain(Length, 4096, out nint second, out PageBacking backing);
        pages.AfterLimitRefusal = null;
        try
        {
            Assert.True(
                fallback.MapRequests == 0 && pages.Fallbacks == 0,
                $"the mapping the limit refused was taken on the portable fallback ({fallback.MapRequests} maps there, {pages.Fallbacks} counted), with the room given back after the refusal");
            Assert.False(mapped, $"the refused mapping was served ({backing})");
        }
        finally
        {
            if (mapped)
            {
                _ = pages.TryUnmap(second, Length, backing, counted: true);
            }
        }

        Assert.Equal(0, pages.MappedBytes);
    }
}
